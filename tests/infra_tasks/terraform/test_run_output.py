"""A terraform process as a step sees it: `-json` events logged as their messages, errors kept
for the run's message, and `show`/`output` documents captured without touching the log."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from infra_tasks.terraform import cli
from infra_tasks.terraform.run_output import RunLog, RunWatch, capture_json, failure_text, stream
from workers.models import JobLogChunk

pytestmark = pytest.mark.django_db

NO_RUN = 0  # RunWatch of a run that does not exist: never asked to stop


def python(script: str) -> list[str]:
    return [sys.executable, "-c", script]


def event(level: str, message: str, kind: str = "log") -> str:
    return json.dumps({"@level": level, "@message": message, "type": kind})


def logged_text(task_id: str) -> str:
    return "".join(chunk.text for chunk in JobLogChunk.objects.filter(task_id=task_id))


def test_events_are_logged_as_their_messages_and_errors_kept_for_the_failure(
    tmp_path: Path,
) -> None:
    lines = [
        event("info", "Terraform 1.9.0", "version"),
        event("info", "aws_s3_bucket.logs: Refreshing state..."),
        "plain output",
        event("error", "Error: creating bucket: AccessDenied", "diagnostic"),
    ]
    script = "import sys\nfor line in sys.argv[1:]:\n    print(line)\nsys.exit(1)"
    log = RunLog("run-output-events")
    with log:
        result = stream(
            [*python(script), *lines], log, tmp_path, {}, RunWatch(NO_RUN), time.monotonic() + 60
        )
    assert not result.ok
    text = logged_text("run-output-events")
    assert "Refreshing state..." in text and "plain output" in text
    assert "Terraform 1.9.0" not in text and "@level" not in text
    assert failure_text("terraform apply", log) == (
        "terraform apply failed: Error: creating bucket: AccessDenied"
    )


def test_a_captured_document_is_read_past_warnings_and_never_logged(tmp_path: Path) -> None:
    document = {"secret_output": {"sensitive": True, "value": "hunter2"}}
    script = f"print('Warning: something deprecated')\nprint({json.dumps(document, indent=2)!r})"
    assert capture_json(python(script), tmp_path, {}, RunWatch(NO_RUN)) == document
    assert not JobLogChunk.objects.exists()


@pytest.mark.parametrize(
    "script",
    ["import sys; print('{}'); sys.exit(1)", "print('no document here')", "print('{not json')"],
)
def test_a_failed_or_unreadable_capture_is_none(tmp_path: Path, script: str) -> None:
    assert capture_json(python(script), tmp_path, {}, RunWatch(NO_RUN)) is None


def test_a_read_is_logged_as_line_by_line_handling_would_log_it() -> None:
    lines = [
        event("info", "Terraform 1.9.0", "version"),
        event("info", "a: (local-exec): one", "provision_progress"),
        event("info", 'say "hi" é', "provision_progress"),
        event("info", "{}", "log"),
        event("info", "{not an event}", "log"),
        event("info", "a: Creation complete", "apply_complete"),
        event("error", "Error: boom", "diagnostic"),
        "plain output",
        "{not json",
        "",
        event("warn", "last", "log"),
    ]
    expected = []
    for line in lines:
        parsed = cli.parse_event(line)
        if parsed is None:
            expected.append(line)
        elif parsed.type != "version":
            expected.append(cli.event_text(parsed))
    log = RunLog("run-output-read")
    log.progress = cli.Progress(total=1)
    with log:
        log.write_block("".join(line + "\n" for line in lines))
    assert logged_text("run-output-read") == "\n".join(expected)
    assert (log.progress.done, log.errors) == (1, ["Error: boom"])
