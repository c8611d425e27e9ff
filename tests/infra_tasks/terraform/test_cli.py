"""The pure terraform CLI helpers: paths, commands, event parsing, plan summaries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra_tasks.terraform import cli
from workers.redaction import MASK, Redactor


def test_workspace_dir_accepts_a_directory_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "prod" / "network").mkdir(parents=True)
    assert cli.workspace_dir(tmp_path, "prod/network") == (tmp_path / "prod/network").resolve()


@pytest.mark.parametrize("directory", ["../etc", "a/../../etc", "/etc", "", ".", "a/.."])
def test_workspace_dir_refuses_paths_that_escape_the_root(tmp_path: Path, directory: str) -> None:
    (tmp_path / "a").mkdir()
    with pytest.raises(cli.WorkspacePathError):
        cli.workspace_dir(tmp_path, directory)


def test_workspace_dir_refuses_a_symlink_pointing_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape").symlink_to(tmp_path)
    with pytest.raises(cli.WorkspacePathError):
        cli.workspace_dir(root, "escape")


def test_plan_command_saves_the_plan_and_asks_for_detailed_exit_codes() -> None:
    command = cli.plan_command(
        "terraform",
        plan_file=Path("/p/run-1.tfplan"),
        destroy=True,
        lock_timeout=30,
        detailed_exitcode=True,
    )
    assert command[:2] == ["terraform", "plan"]
    for flag in ("-input=false", "-no-color", "-json", "-lock-timeout=30s", "-destroy"):
        assert flag in command
    assert "-out=/p/run-1.tfplan" in command and "-detailed-exitcode" in command


def test_apply_command_applies_the_saved_plan_file_only() -> None:
    command = cli.apply_command("terraform", plan_file=Path("/p/run-1.tfplan"), lock_timeout=5)
    assert command[-1] == "/p/run-1.tfplan"
    assert "-auto-approve" not in command and not any(a.startswith("-var") for a in command)


def test_variables_go_to_the_environment_with_non_strings_as_json() -> None:
    env = cli.variables_environment({"count": 3, "name": "x"}, {"token": "s3cret"})
    assert env == {"TF_VAR_count": "3", "TF_VAR_name": "x", "TF_VAR_token": "s3cret"}


def test_parse_event_reads_json_events_and_leaves_plain_lines_alone() -> None:
    line = json.dumps({"@message": "Plan: 1 to add", "type": "change_summary", "@level": "info"})
    event = cli.parse_event(line)
    assert event is not None and event.type == "change_summary"
    assert cli.event_text(event) == "Plan: 1 to add"
    assert cli.parse_event("│ Warning: something") is None
    assert cli.parse_event("{not json") is None


def test_diagnostic_events_show_their_detail() -> None:
    event = cli.parse_event(
        json.dumps(
            {
                "@message": "Error: Saved plan is stale",
                "@level": "error",
                "type": "diagnostic",
                "diagnostic": {"detail": "The state was changed."},
            }
        )
    )
    assert event is not None
    assert cli.event_text(event) == "Error: Saved plan is stale\nThe state was changed."


def test_progress_counts_completed_resources_against_the_planned_total() -> None:
    def event(kind: str) -> cli.Event:
        return cli.Event(type=kind, message="", data={})

    progress = cli.Progress(total=3)
    assert not progress.feed(event("planned_change"))
    assert progress.feed(event("apply_complete"))
    progress.feed(event("apply_complete"))
    assert (progress.done, progress.total) == (2, 3)

    counted = cli.Progress()
    counted.feed(event("planned_change"))
    counted.feed(event("planned_change"))
    assert counted.total == 2


def test_plan_summary_counts_like_terraform() -> None:
    show = {
        "resource_changes": [
            {"change": {"actions": ["create"]}},
            {"change": {"actions": ["update"]}},
            {"change": {"actions": ["delete", "create"]}},
            {"change": {"actions": ["delete"]}},
            {"change": {"actions": ["no-op"]}},
            {"change": {"actions": ["read"]}},
        ]
    }
    summary = cli.plan_summary(show)
    assert summary.as_dict() == {"add": 2, "change": 1, "destroy": 2}
    assert summary.has_changes and str(summary) == "2 to add, 1 to change, 2 to destroy"
    assert not cli.plan_summary({}).has_changes


def test_public_outputs_keep_only_the_names_of_sensitive_ones() -> None:
    outputs = {
        "url": {"sensitive": False, "value": "https://x"},
        "password": {"sensitive": True, "value": "hunter22"},
    }
    assert cli.public_outputs(outputs) == {"url": "https://x", "password": cli.SENSITIVE_OUTPUT}


def test_public_outputs_pass_through_the_redactor_however_nested() -> None:
    outputs = {
        "token": {"sensitive": False, "value": "the-token-value"},
        "creds": {
            "sensitive": False,
            "value": {"id": "AKIAIOSFODNN7EXAMPLE", "paths": ["/x/the-token-value/y", 3]},
        },
    }
    stored = cli.public_outputs(outputs, Redactor(["the-token-value"]))
    assert stored == {"token": MASK, "creds": {"id": MASK, "paths": [f"/x/{MASK}/y", 3]}}


def test_parse_event_fast_path_agrees_with_a_full_parse_on_terraform_lines() -> None:
    lines = [
        '{"@level":"info","@message":"terraform_data.slow: (local-exec): say \\"hi\\" \\u00e9",'
        '"@module":"terraform.ui","hook":{"resource":{"resource_type":"terraform_data"},'
        '"output":"x"},"type":"provision_progress"}',
        '{"@level":"info","@message":"Terraform 1.11.4","@module":"terraform.ui",'
        '"terraform":"1.11.4","type":"version","ui":"1.2"}',
        '{"@level":"info","@message":"Outputs: 1","outputs":{"g":{"type":"string"}},'
        '"type":"outputs"}',
    ]
    for line in lines:
        event = cli.parse_event(line)
        data = json.loads(line)
        assert event is not None
        assert (event.type, event.message) == (data["type"], data["@message"])
        assert event.data["@level"] == "info"


def test_plain_event_message_is_the_full_parse_message_and_leaves_what_counts_to_it() -> None:
    progress = (
        '{"@level":"info","@message":"terraform_data.slow: (local-exec): say \\"hi\\" \\u00e9",'
        '"@module":"terraform.ui","hook":{"resource":{"resource_type":"terraform_data"},'
        '"output":"x"},"type":"provision_progress"}'
    )
    outputs = (
        '{"@level":"info","@message":"Outputs: 1","outputs":{"g":{"type":"string"}},'
        '"type":"outputs"}'
    )
    right_after = '{"@level":"warn","@message":"hello","type":"log"}'
    for line in (progress, outputs, right_after):
        assert cli.plain_event_message(line) == json.loads(line)["@message"]
    # Taken through parse_event: what the summary keeps, what progress counts, the rest.
    for line in (
        '{"@level":"error","@message":"Error: boom","@module":"terraform.ui","type":"log"}',
        '{"@level":"info","@message":"Terraform 1.11.4","terraform":"1.11.4","type":"version",'
        '"ui":"1.2"}',
        '{"@level":"info","@message":"a: Plan to create","change":{},"type":"planned_change"}',
        '{"@level":"info","@message":"a: Creation complete","hook":{},"type":"apply_complete"}',
        # The last "type" key is the event's, whatever a nested one says.
        '{"@level":"info","@message":"m","hook":{"type":"provision_progress"},'
        '"type":"apply_complete"}',
        '{"@level":"error","@message":"Error: x","diagnostic":{"detail":"d"},"type":"diagnostic"}',
        "plain output",
        "{not json",
    ):
        assert cli.plain_event_message(line) is None


def test_plain_event_messages_replaces_exactly_the_lines_plain_event_message_would() -> None:
    lines = [
        '{"@level":"info","@message":"a: (local-exec): line 1","@module":"terraform.ui",'
        '"hook":{"resource":{}},"type":"provision_progress"}',
        '{"@level":"warn","@message":"hello","type":"log"}',
        '{"@level":"info","@message":"{not an event}","type":"log"}',
        '{"@level":"info","@message":"m","hook":{"type":"provision_progress"},'
        '"type":"apply_complete"}',
        '{"@level":"info","@message":"a: Plan to create","change":{},"type":"planned_change"}',
        '{"@level":"info","@message":"Terraform 1.11.4","terraform":"1.11.4","type":"version"}',
        '{"@level":"error","@message":"Error: boom","type":"log"}',
        '{"@level":"info","@message":"say \\"hi\\"","type":"log"}',
        '{"@level":"info","@message":"typed","type":"versions"}',
        "plain output",
        "{not json",
        "",
        '{"@level":"info","@message":"trailing CR","type":"log"}\r',
    ]
    replaced = cli.plain_event_messages("\n".join(lines)).split("\n")
    assert len(replaced) == len(lines)
    for line, result in zip(lines, replaced, strict=True):
        message = cli.plain_event_message(line)
        if message is not None and "\\" not in line:
            assert result == message
            assert '"' not in result
        else:
            assert result == line  # left for the line-by-line path
