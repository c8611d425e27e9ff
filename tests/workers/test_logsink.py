"""Every job writes its log through one interface; the writer and the capture both take it."""

from __future__ import annotations

from workers.joblog import JobLogWriter
from workers.logsink import LineCapture, LogSink


def test_the_job_log_writer_and_the_capture_are_both_log_sinks() -> None:
    assert issubclass(JobLogWriter, LogSink)
    assert isinstance(LineCapture(), LogSink)


def test_the_capture_joins_text_written_in_pieces_into_whole_lines() -> None:
    capture = LineCapture()
    capture.write("first li")
    capture.write("ne\nsecond\nthi")
    capture.line("fourth")  # a whole line goes in as it is given
    capture.write("rd")
    capture.write_block("fifth\nsixth\n")
    assert capture.lines == ["first line", "second", "fourth", "fifth", "sixth"]
    assert capture.text.endswith("sixth\nthird")
