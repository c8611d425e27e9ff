"""How jobs read to a person: the same words on every page. Pure functions, no database."""

from __future__ import annotations

import pytest

from workers.display import arguments_text, duration_text, job_family, state_label


@pytest.mark.parametrize(
    ("status", "label"),
    [
        ("PENDING", "Queued (PENDING)"),
        ("STARTED", "Running (STARTED)"),
        ("SUCCESS", "Succeeded (SUCCESS)"),
        ("FAILURE", "Failed (FAILURE)"),
        ("REVOKED", "Cancelled (REVOKED)"),
        ("PROGRESS", "PROGRESS"),
        ("", "Unknown"),
    ],
)
def test_state_label_says_what_the_state_means_and_keeps_celerys_name(
    status: str, label: str
) -> None:
    assert state_label(status) == label


@pytest.mark.parametrize(
    ("task_name", "family"),
    [
        ("workers.tasks.diagnostic_run_execute", "Diagnostic"),
        ("workers.tasks.queue_depths_record", "System"),
        ("media_pipeline.tasks.course_cover_variants_build", "Courses"),
        ("infra_tasks.terraform.tasks.terraform_apply", "Terraform"),
        ("infra_tasks.rds.tasks.database_action_execute", "Databases"),
        ("infra_tasks.releases.tasks.release_execute", "Releases"),
        ("infra_tasks.dashboard.tasks.ecs_services_refresh", "Infrastructure"),
        ("celery.backend_cleanup", "System"),
        ("elsewhere.task", "Other"),
        (None, "Other"),
    ],
)
def test_job_family_is_what_a_person_went_to_the_admin_for(
    task_name: str | None, family: str
) -> None:
    assert job_family(task_name) == family


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (0.03376166799989733, "< 0.1 s"),
        (-0.02, "< 0.1 s"),
        (4.56, "4.6 s"),
        (59.94, "59.9 s"),
        (184.2, "3 min 04 s"),
        (7512, "2 h 05 min"),
    ],
)
def test_duration_text_is_short_and_never_negative(seconds: float | None, text: str) -> None:
    assert duration_text(seconds) == text


@pytest.mark.parametrize(
    ("task_args", "task_kwargs", "text"),
    [
        ("[2]", "{}", "2"),  # as the enqueue path stores them
        ('"(2,)"', '"{}"', "2"),  # as a worker's result backend rewrites them
        ('[7, "stop"]', '{"force": true}', "7, 'stop', force=True"),
        ("\"(3, 'abc')\"", "\"{'batch': 2}\"", "3, 'abc', batch=2"),
        ('"()"', '"{}"', "none"),
        (None, None, "none"),
        ('"<object at 0x1>"', None, "'<object at 0x1>'"),
    ],
)
def test_arguments_read_as_a_call_whichever_way_they_were_stored(
    task_args: str | None, task_kwargs: str | None, text: str
) -> None:
    assert arguments_text(task_args, task_kwargs) == text
