"""The job log writer batches, redacts before storing, and reads back by offset."""

from __future__ import annotations

import random
from typing import Any

import pytest
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from workers.joblog import JobLogWriter, chunk_insert, lines_within
from workers.models import JobLogChunk
from workers.redaction import Redactor
from workers.selectors import job_log_iter_text, job_log_since


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


pytestmark = pytest.mark.django_db


def test_lines_are_stored_in_batches_of_the_configured_size() -> None:
    with JobLogWriter("t-batch", flush_lines=100, flush_seconds=60) as log:
        for n in range(250):
            log.line(f"line {n}")
        assert JobLogChunk.objects.filter(task_id="t-batch").count() == 2
    chunks = list(JobLogChunk.objects.filter(task_id="t-batch").order_by("start_line"))
    assert [(c.start_line, c.end_line) for c in chunks] == [(0, 100), (100, 200), (200, 250)]


def test_a_quiet_writer_flushes_after_the_interval() -> None:
    clock = FakeClock()
    log = JobLogWriter("t-time", flush_lines=1000, flush_seconds=0.25, clock=clock)
    log.line("first")
    assert not JobLogChunk.objects.filter(task_id="t-time").exists()
    clock.now = 0.3
    log.flush_if_due()
    assert job_log_since(task_id="t-time").lines == ["first"]


def test_secret_values_never_reach_the_database() -> None:
    with JobLogWriter("t-secret", redact=Redactor(["sup3r-secret-value"])) as log:
        log.line("connecting with sup3r-secret-value now")
        log.write("partial sup3r-")
        log.write("secret-value end\n")
    stored = "".join(JobLogChunk.objects.filter(task_id="t-secret").values_list("text", flat=True))
    assert "sup3r-secret-value" not in stored
    assert "connecting with [REDACTED] now" in stored
    assert "partial [REDACTED] end" in stored


def test_buffered_lines_are_flushed_when_the_job_fails() -> None:
    with (
        pytest.raises(RuntimeError),
        JobLogWriter("t-fail", flush_lines=1000, flush_seconds=60) as log,
    ):
        log.line("before the error")
        raise RuntimeError("boom")
    assert job_log_since(task_id="t-fail").lines == ["before the error", "!! RuntimeError: boom"]


def test_a_process_made_to_exit_mid_job_says_so_in_words() -> None:
    with pytest.raises(SystemExit), JobLogWriter("t-exit") as log:
        log.line("working")
        raise SystemExit(-241)  # what a pool process killed at its hard time limit raises
    assert job_log_since(task_id="t-exit").lines == [
        "working",
        "!! stopped: its process was made to exit (code -241)",
    ]


def test_reading_since_an_offset_is_one_query_and_returns_only_newer_lines() -> None:
    with JobLogWriter("t-offset", flush_lines=10, flush_seconds=60) as log:
        for n in range(35):
            log.line(f"l{n}")
    with CaptureQueriesContext(connection) as queries:
        piece = job_log_since(task_id="t-offset", since=17)
    assert len(queries) == 1
    assert piece.lines == [f"l{n}" for n in range(17, 35)]
    assert piece.next_line == 35
    assert job_log_since(task_id="t-offset", since=35).lines == []


def test_a_second_attempt_appends_after_the_first() -> None:
    with JobLogWriter("t-resume") as log:
        log.line("attempt one")
    with JobLogWriter("t-resume") as log:
        assert log.resumed
        log.line("attempt two")
    assert job_log_since(task_id="t-resume").lines == ["attempt one", "attempt two"]


def test_download_text_is_the_whole_log_in_order() -> None:
    with JobLogWriter("t-dl", flush_lines=2, flush_seconds=60) as log:
        for n in range(5):
            log.line(f"d{n}")
    assert "".join(job_log_iter_text(task_id="t-dl")) == "d0\nd1\nd2\nd3\nd4\n"


def test_a_line_longer_than_the_limit_is_stored_cut_saying_how_much_was_dropped(
    settings: Any,
) -> None:
    settings.JOB_LOG_MAX_LINE_BYTES = 1000
    with JobLogWriter("t-long", flush_lines=100, flush_seconds=60) as log:
        log.line("before")
        log.line("é" * 3000)  # 6,000 bytes of UTF-8
        log.write("x" * 700)  # a long line written in pieces is cut the same way
        log.write("x" * 700 + "\nafter\n")

    before, cut, pieces, after = job_log_since(task_id="t-long").lines
    assert (before, after) == ("before", "after")
    for line, total in ((cut, 6000), (pieces, 1400)):
        assert len(line.encode()) <= 1000
        kept = line.split(" [… line cut:")[0]
        assert line.endswith(
            f"[… line cut: {total - len(kept.encode()):,} more bytes not stored; limit 1,000]"
        )
    assert cut.startswith("é" * 400)


def test_one_read_of_the_log_carries_about_the_size_budget_and_the_rest_follows() -> None:
    lines = [f"{n:03d} " + "y" * 96 for n in range(300)]  # 101 characters a line, newline too
    with JobLogWriter("t-budget", flush_lines=40, flush_seconds=60) as log:
        for line in lines:
            log.line(line)

    first = job_log_since(task_id="t-budget", max_bytes=2000)
    assert first.more and len(first.lines) == 19 and first.next_line == 19
    read, since, polls = list(first.lines), first.next_line, 1
    while True:
        piece = job_log_since(task_id="t-budget", since=since, max_bytes=2000)
        polls += 1
        assert sum(len(line) + 1 for line in piece.lines) <= 2000
        read += piece.lines
        since = piece.next_line
        if not piece.more:
            break
    assert read == lines and since == 300 and polls == 16


def test_lines_within_never_passes_a_text_with_a_longer_line() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        width = rng.randint(1, 40)
        lines = [rng.choice("ab\r") * rng.randint(0, 2 * width) for _ in range(rng.randint(1, 8))]
        text = "\n".join(lines) + rng.choice(["", "\n"])
        longest = max(len(line) for line in text.split("\n"))
        for form in (text, text.encode()):
            if lines_within(form, width):
                assert longest <= width, (form, width)
    # Lines well within the width, as a busy command prints them, pass without a split.
    block = "".join(f"line {n}\n" for n in range(10_000))
    assert lines_within(block, 64) and lines_within(block.encode(), 64)


def test_text_written_in_blocks_is_stored_as_written_line_by_line(settings: Any) -> None:
    settings.JOB_LOG_MAX_LINE_BYTES = 200
    rng = random.Random(11)
    lines = [
        rng.choice(["plain", "é" * 30, "x" * 500, "crlf\r", "", "ü" * 90]) + str(n)
        for n in range(3000)
    ]
    text = "".join(line + "\n" for line in lines) + "unfinished"
    with JobLogWriter("t-lines", flush_lines=700, flush_seconds=60) as log:
        for line in lines:
            log.line(line)
        log.write("unfinished")
    with JobLogWriter("t-blocks", flush_lines=700, flush_seconds=60) as log:
        at = 0
        while at < len(text):  # pieces cut anywhere, mid-line included
            size = rng.randint(1, 5000)
            piece = text[at : at + size]
            if piece.endswith("\n") and (at == 0 or text[at - 1] == "\n"):
                log.write_block(piece)  # whole lines, as run_streaming hands them over
            else:
                log.write(piece)
            at += size

    def stored(task_id: str) -> tuple[list[str], int]:
        chunks = JobLogChunk.objects.filter(task_id=task_id).order_by("start_line")
        ends = [chunk.end_line for chunk in chunks]
        return "\n".join(chunk.text for chunk in chunks).split("\n"), ends[-1]

    assert stored("t-blocks") == stored("t-lines")
    assert stored("t-blocks")[1] == len(lines) + 1


def test_log_text_is_stored_lz4_compressed() -> None:
    with JobLogWriter("t-lz4", flush_lines=5000, flush_seconds=60) as log:
        log.write_block(
            "".join(f"terraform_data.noisy (local-exec): line {n}\n" for n in range(3000))
        )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_column_compression(text) FROM workers_joblogchunk WHERE task_id = %s",
            ["t-lz4"],
        )
        assert cursor.fetchall() == [("lz4",)]


def test_a_chunk_is_stored_as_the_orm_stores_it() -> None:
    text = "line with 'quotes', a backslash \\ and é\n" * 50 + "last"
    JobLogChunk.objects.create(task_id="t-orm", start_line=0, end_line=51, text=text)
    chunk_insert(task_id="t-bound", start_line=0, end_line=51, text=text)

    orm, bound = (JobLogChunk.objects.get(task_id=task_id) for task_id in ("t-orm", "t-bound"))
    assert (bound.start_line, bound.end_line, bound.text) == (0, 51, text)
    assert abs((bound.created_at - orm.created_at).total_seconds()) < 60
    with pytest.raises(IntegrityError):  # the table's constraints hold as for the ORM
        chunk_insert(task_id="t-bound", start_line=0, end_line=60, text="again")


def _own_connection_dropped() -> None:
    """This process's connection terminated by the server, as a failover does."""
    import psycopg

    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"]
    ) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])


@pytest.mark.django_db(transaction=True)
def test_a_holding_writer_keeps_its_lines_while_the_database_is_away_and_stores_them_after() -> (
    None
):
    clock = FakeClock()
    log = JobLogWriter(
        "t-hold", flush_lines=1000, flush_seconds=1, clock=clock, hold_while_database_away=True
    )
    log.line("before")
    log.flush()
    _own_connection_dropped()
    log.line("while away")
    log.flush()  # the insert fails: the line is kept, nothing raised
    log.line("after")
    clock.now = 2  # the next try, due after flush_seconds, opens a fresh connection
    log.flush_if_due()
    log.close()

    chunks = list(JobLogChunk.objects.filter(task_id="t-hold").order_by("start_line"))
    assert [(c.start_line, c.end_line, c.text) for c in chunks] == [
        (0, 1, "before"),
        (1, 3, "while away\nafter"),
    ]


@pytest.mark.django_db(transaction=True)
def test_a_writer_that_does_not_hold_raises_the_database_error() -> None:
    from django.db import OperationalError

    log = JobLogWriter("t-no-hold", flush_lines=1000, flush_seconds=60)
    log.line("before")
    log.flush()
    _own_connection_dropped()
    log.line("while away")
    with pytest.raises(OperationalError):
        log.flush()
    connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_holding_writer_gives_up_past_what_it_may_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import OperationalError

    from workers import joblog

    monkeypatch.setattr(joblog, "HELD_CHARACTERS", 100)
    clock = FakeClock()
    log = JobLogWriter(
        "t-hold-cap", flush_lines=1000, flush_seconds=1, clock=clock, hold_while_database_away=True
    )
    _own_connection_dropped()
    log.line("x" * 50)
    log.flush()  # held: within the cap
    connection.ensure_connection()
    _own_connection_dropped()
    log.line("y" * 60)
    clock.now = 2
    with pytest.raises(OperationalError):
        log.flush()  # 112 characters would wait: the error is raised
    connection.close()
