"""Geometry of the operations page's inline SVG charts (no Django, no JavaScript, no CDN).

One bar per time bucket: jobs finished, with the failed part stacked on top in another
colour; and a line of the mean duration with the maximum as a lighter line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Bucket:
    label: str  # e.g. "14:00"
    finished: int
    failed: int
    mean_seconds: float | None
    max_seconds: float | None


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    ok_y: float
    ok_height: float
    failed_y: float
    failed_height: float
    title: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak_jobs: int
    mean_line: str  # SVG polyline points
    max_line: str
    peak_seconds: float
    labels: list[tuple[float, str]]  # x positions of a few bucket labels


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten not below value (a readable axis maximum)."""
    if value <= 0:
        return 1
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    while magnitude > value:
        magnitude /= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _points(values: Sequence[float | None], xs: Sequence[float], top: float, height: int) -> str:
    return " ".join(
        f"{x:.1f},{height - (value / top) * height:.1f}"
        for x, value in zip(xs, values, strict=True)
        if value is not None
    )


def timeline_chart(buckets: Sequence[Bucket], *, width: int = 720, height: int = 120) -> Chart:
    count = max(len(buckets), 1)
    slot = width / count
    gap = min(2.0, slot / 4)
    peak_jobs = int(nice_ceiling(max((b.finished for b in buckets), default=0)))
    peak_seconds = nice_ceiling(max((b.max_seconds or 0 for b in buckets), default=0))
    bars = []
    for i, bucket in enumerate(buckets):
        failed = min(bucket.failed, bucket.finished)
        ok_height = (bucket.finished - failed) / peak_jobs * height
        failed_height = failed / peak_jobs * height
        bars.append(
            Bar(
                x=round(i * slot + gap / 2, 1),
                width=round(slot - gap, 1),
                ok_y=round(height - ok_height, 1),
                ok_height=round(ok_height, 1),
                failed_y=round(height - ok_height - failed_height, 1),
                failed_height=round(failed_height, 1),
                title=f"{bucket.label}: {bucket.finished} finished, {failed} failed",
            )
        )
    centres = [i * slot + slot / 2 for i in range(len(buckets))]
    every = max(1, len(buckets) // 6)
    return Chart(
        width=width,
        height=height,
        bars=bars,
        peak_jobs=peak_jobs,
        mean_line=_points([b.mean_seconds for b in buckets], centres, peak_seconds, height),
        max_line=_points([b.max_seconds for b in buckets], centres, peak_seconds, height),
        peak_seconds=peak_seconds,
        labels=[(round(centres[i], 1), buckets[i].label) for i in range(0, len(buckets), every)],
    )
