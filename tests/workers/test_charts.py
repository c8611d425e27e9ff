"""Chart geometry for the operations page (pure functions, no database)."""

from __future__ import annotations

import pytest

from workers.charts import Bucket, nice_ceiling, timeline_chart


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, 1), (0.3, 0.5), (1, 1), (3, 5), (7, 10), (12, 20), (240, 500), (1000, 1000)],
)
def test_axis_maximum_is_a_round_number_at_or_above_the_peak(value: float, expected: float) -> None:
    assert nice_ceiling(value) == pytest.approx(expected)


def test_bars_stack_failures_on_successes_within_the_chart_height() -> None:
    chart = timeline_chart(
        [
            Bucket("10:00", finished=10, failed=0, mean_seconds=1.0, max_seconds=2.0),
            Bucket("11:00", finished=4, failed=3, mean_seconds=4.0, max_seconds=8.0),
            Bucket("12:00", finished=0, failed=0, mean_seconds=None, max_seconds=None),
        ],
        width=300,
        height=100,
    )
    assert chart.peak_jobs == 10 and chart.peak_seconds == 10
    full, mixed, empty = chart.bars
    assert (full.ok_y, full.ok_height, full.failed_height) == (0, 100, 0)
    assert (mixed.ok_height, mixed.failed_height) == (10, 30)
    assert mixed.failed_y + mixed.failed_height == mixed.ok_y  # red sits on top of blue
    assert (empty.ok_height, empty.failed_height) == (0, 0)
    assert mixed.title == "11:00: 4 finished, 3 failed"
    assert all(bar.x + bar.width <= 300 for bar in chart.bars)


def test_duration_lines_skip_hours_without_finished_jobs() -> None:
    chart = timeline_chart(
        [
            Bucket("10:00", 1, 0, 5.0, 5.0),
            Bucket("11:00", 0, 0, None, None),
            Bucket("12:00", 1, 0, 2.5, 5.0),
        ],
        width=300,
        height=100,
    )
    assert chart.peak_seconds == 5
    assert chart.mean_line == "50.0,0.0 250.0,50.0"
    assert chart.max_line == "50.0,0.0 250.0,0.0"


def test_an_empty_day_draws_nothing_but_keeps_a_scale() -> None:
    chart = timeline_chart([Bucket(f"{h:02}:00", 0, 0, None, None) for h in range(24)])
    assert chart.peak_jobs == 1
    assert chart.mean_line == "" and chart.max_line == ""
    assert len(chart.bars) == 24 and len(chart.labels) == 6
