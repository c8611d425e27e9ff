"""Django's Tasks API on opsqueue: `@task` functions of an installed app, enqueued through
`job_enqueue`, run by a real worker over the local SQS endpoint, read back from the stored
records (real PostgreSQL)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import logging
import os
import subprocess
import sys
import types
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model
from django.core import checks
from django.db import connections, transaction
from django.test import Client
from django.test.utils import override_settings
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, PeriodicTask
from django_celery_beat.schedulers import ModelEntry
from django_celery_results.models import TaskResult as StoredResult

from tests.support.broker import drop_broker_connections, publishing_to
from tests.support.servers import AwsEndpoint, WorkerProcess, wait_until
from tests.workers.tasks_app import tasks
from tests.workers.tasks_app.views import RolledBack
from workers.beat import RecordingDatabaseScheduler
from workers.broker import sqs_queue_name
from workers.celery import app
from workers.deferred import deferred_job_send
from workers.devstack import free_port
from workers.enqueue import BrokerUnavailable, Requester, job_message
from workers.models import Job, JobLogChunk, RequesterKind
from workers.outbox import publish_now, relay
from workers.queues import QUEUES
from workers.requesters import requester_scope
from workers.selectors import job_log_since
from workers.services import job_records_cleanup, job_republish_unsent
from workers.tasks_api import (
    InvalidTaskError,
    Task,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    default_task_backend,
    task,
    task_backends,
    task_signals,
)
from workers.tasks_backend import OpsqueueBackend, celery_task_register, get_job_log

pytestmark = pytest.mark.django_db(transaction=True)

BASE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def ours(model: type[Job] | type[StoredResult]) -> int:
    """Records of this file's tasks (the session's shared worker may record others)."""
    return model.objects.filter(task_name__startswith="tests.workers.tasks_app.").count()


def finished(result: TaskResult) -> TaskResult:
    def done() -> bool:
        result.refresh()
        return result.is_finished

    wait_until(done, timeout=30, message=f"task {result.id} to finish")
    return result


def sqs_messages(aws: AwsEndpoint, queue: str) -> int:
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=sqs_queue_name(queue))["QueueUrl"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


@override_settings(ROOT_URLCONF="tests.workers.tasks_app.urls")
def test_task_enqueued_in_a_view_is_pending_at_once_with_its_user_then_successful(
    worker: WorkerProcess,
) -> None:
    user = get_user_model().objects.create_user("alice", is_staff=True)
    client = Client()
    client.force_login(user)

    response = client.get("/enqueue-add/", {"a": 2, "b": 3})

    assert response.status_code == 200
    result_id = response.json()["id"]
    assert response.json()["status"] == "READY"
    # Recorded before any worker touches it: PENDING, the request's user as requester.
    job = Job.objects.get(task_id=result_id)
    assert (job.requester_kind, job.requester_label, job.requested_by) == (
        RequesterKind.USER,
        "alice",
        user,
    )
    assert job.queue == "default"
    stored = StoredResult.objects.get(task_id=result_id)
    assert stored.task_name == "tests.workers.tasks_app.tasks.add"
    assert json.loads(stored.task_args) == [2, 3]

    result = finished(tasks.add.get_result(result_id))

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert (result.args, result.kwargs, result.errors) == ([2, 3], {}, [])
    assert result.worker_ids == [worker.hostname]
    assert result.enqueued_at and result.started_at and result.finished_at
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert StoredResult.objects.get(task_id=result_id).status == "SUCCESS"
    assert job_log_since(task_id=result_id).lines == ["adding 2 and 3"]


@override_settings(ROOT_URLCONF="tests.workers.tasks_app.urls")
def test_a_view_rolled_back_after_enqueueing_leaves_nothing_queued_or_recorded(
    worker: WorkerProcess, sqs_queues: AwsEndpoint
) -> None:
    user = get_user_model().objects.create_user("bob", is_staff=True)
    client = Client()
    client.force_login(user)

    with pytest.raises(RolledBack):
        client.get("/enqueue-add/", {"a": 1, "b": 1, "fail": 1})

    assert relay.drain(timeout=10)
    assert not ours(Job) and not ours(StoredResult)
    assert sqs_messages(sqs_queues, "default") == 0


def test_run_after_five_seconds_starts_no_earlier_and_runs_once(
    worker: WorkerProcess, sqs_queues: AwsEndpoint
) -> None:
    run_after = timezone.now() + timedelta(seconds=5)
    with requester_scope(Requester.cli("test")):
        result = tasks.note_start.using(run_after=run_after).enqueue("later")

    assert relay.drain(timeout=10)
    # Sent at once, held back by SQS itself: no worker holds it while it waits.
    assert Job.objects.get(task_id=result.id).sent_at is not None
    assert Job.objects.get(task_id=result.id).run_after == run_after
    while timezone.now() < run_after - timedelta(seconds=1):
        result.refresh()
        assert result.status == TaskResultStatus.READY, "started before run_after"
    finished(result)

    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.started_at is not None and result.started_at >= run_after
    wait_until(lambda: sqs_messages(sqs_queues, "default") == 0, message="queue empty")
    assert len(job_log_since(task_id=result.id).lines) == 1, "the job ran more than once"


def test_run_after_beyond_sqs_delay_waits_in_a_clocked_beat_entry_that_sends_the_same_job(
    worker: WorkerProcess, sqs_queues: AwsEndpoint
) -> None:
    run_after = timezone.now() + timedelta(hours=2)
    with requester_scope(Requester.cli("test")):
        result = tasks.add.using(run_after=run_after).enqueue(20, 22)
    assert relay.drain(timeout=10)

    # Recorded, unsent, and not on any queue: a one-off clocked entry will send it.
    job = Job.objects.get(task_id=result.id)
    assert job.sent_at is None and job.run_after == run_after
    assert sqs_messages(sqs_queues, "default") == 0
    entry = PeriodicTask.objects.get(task="tests.workers.tasks_app.tasks.add")
    assert entry.one_off and entry.clocked is not None
    assert entry.clocked.clocked_time == run_after
    assert not ModelEntry(entry, app=app).is_due().is_due
    # The outbox sweep leaves it to its entry.
    assert job_republish_unsent(older_than=timedelta(0)) == 0

    # Two hours pass (both clocks moved back): beat finds the entry due and sends the
    # recorded job, under its own id.
    passed = timezone.now() - timedelta(seconds=1)
    Job.objects.filter(task_id=result.id).update(run_after=passed)
    entry.clocked.clocked_time = passed
    entry.clocked.save()
    entry.refresh_from_db()
    model_entry = ModelEntry(entry, app=app)
    assert model_entry.is_due().is_due
    scheduler = RecordingDatabaseScheduler(app=app)
    try:
        sent = scheduler.apply_async(model_entry)
    finally:
        scheduler.close()

    assert sent.id == result.id
    assert finished(result).return_value == 42
    assert ours(Job) == 1, "the scheduler started a second job"


def test_a_deferred_job_is_sent_once_however_often_its_entry_or_the_sweep_fires(
    sqs_queues: AwsEndpoint,
) -> None:
    with requester_scope(Requester.cli("test")), transaction.atomic():
        result = tasks.add.using(run_after=timezone.now() + timedelta(hours=2)).enqueue(2, 2)
    Job.objects.filter(task_id=result.id).update(run_after=timezone.now())

    # Onto queues no worker reads, so the job stays PENDING while it is sent again.
    with publishing_to("opsqueue-unread-i18-"):
        assert deferred_job_send(task_id=result.id) is True
        assert deferred_job_send(task_id=result.id) is False
        assert job_republish_unsent(older_than=timedelta(0)) == 0

    sqs = sqs_queues.client("sqs")
    url = sqs.get_queue_url(QueueName="opsqueue-unread-i18-default")["QueueUrl"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "1"
    sqs.purge_queue(QueueUrl=url)


def test_a_deferred_job_shows_when_it_may_start_and_its_entry_goes_with_its_records(
    sqs_queues: AwsEndpoint,
) -> None:
    run_after = timezone.now() + timedelta(hours=1)
    with requester_scope(Requester.cli("test")), transaction.atomic():
        result = tasks.add.using(run_after=run_after).enqueue(1, 1)
    assert PeriodicTask.objects.filter(task="tests.workers.tasks_app.tasks.add").exists()
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("ops"))
    page = client.get(f"/ops/jobs/{result.id}/", follow=True).content.decode()
    shown = timezone.localtime(run_after).strftime("%Y-%m-%d %H:%M:%S")
    assert f'not before <span id="job-run-after">{shown}' in page

    assert job_records_cleanup(older_than=timedelta(microseconds=1)) >= 1

    assert not Job.objects.filter(task_id=result.id).exists()
    assert not PeriodicTask.objects.filter(task="tests.workers.tasks_app.tasks.add").exists()
    assert not ClockedSchedule.objects.exists()


def test_a_late_redelivery_of_a_finished_job_does_not_run_it_again(
    worker: WorkerProcess, sqs_queues: AwsEndpoint
) -> None:
    with requester_scope(Requester.cli("test")):
        result = tasks.note_start.enqueue("once")
    first = finished(result).return_value
    job = Job.objects.get(task_id=result.id)

    # The same message again, as SQS would deliver it after a lost acknowledgement.
    publish_now(
        job_message(
            celery_task_register(tasks.note_start),
            result.id,
            Requester.cli("test"),
            ["once"],
            {},
            {"queue": job.queue},
        )
    )
    wait_until(lambda: sqs_messages(sqs_queues, "default") == 0, message="redelivery taken")
    wait_until(
        lambda: "not run again" in worker.log_text() or None,
        timeout=30,
        message="the worker to set the redelivery aside",
    )

    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == first
    assert len(job_log_since(task_id=result.id).lines) == 1


def test_an_async_task_runs_to_completion_on_the_worker(worker: WorkerProcess) -> None:
    with requester_scope(Requester.cli("test")):
        result = tasks.add_later.enqueue(2, 40)
    assert finished(result).return_value == 42


def test_the_frameworks_signals_fire_enqueued_after_commit_then_started_and_finished(
    worker: WorkerProcess,
) -> None:
    enqueued: list[TaskResult] = []

    def receive(sender: object, task_result: TaskResult, **kwargs: object) -> None:
        enqueued.append(task_result)

    task_signals.task_enqueued.connect(receive)
    try:
        with requester_scope(Requester.cli("test")), transaction.atomic():
            result = tasks.add.enqueue(3, 4)
            assert enqueued == [], "enqueued before the job was committed"
        assert [r.id for r in enqueued] == [result.id]
    finally:
        task_signals.task_enqueued.disconnect(receive)
    finished(result)

    # On the worker, the backport's own receivers log each signal.
    path = "tests.workers.tasks_app.tasks.add"
    log = worker.log_text()
    assert f"Task id={result.id} path={path} state=RUNNING" in log
    assert f"Task id={result.id} path={path} state=SUCCESSFUL" in log


def run_in_own_loop(coroutine_function: Any) -> Any:
    """Await `coroutine_function()` in a thread of its own, with this context's variables.

    Not `async_to_sync` here: a session's browser tests keep Playwright's event loop running
    in the main thread, and asgiref refuses to start another one beside it.
    """

    async def then_close_connections() -> Any:
        try:
            return await coroutine_function()
        finally:
            # The ORM calls ran in asgiref's executor thread: its connection would stay
            # open past the session and keep the test database from being dropped.
            await sync_to_async(connections.close_all)()

    context = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(context.run, asyncio.run, then_close_connections()).result(timeout=120)


def test_aenqueue_and_aget_result_work_from_async_code(worker: WorkerProcess) -> None:
    async def enqueue_and_read() -> tuple[str, TaskResultStatus]:
        result = await tasks.add.aenqueue(5, 6)
        stored = await tasks.add.aget_result(result.id)
        return result.id, stored.status

    with requester_scope(Requester.cli("async caller")):
        result_id, status = run_in_own_loop(enqueue_and_read)

    assert status == TaskResultStatus.READY
    assert Job.objects.get(task_id=result_id).requester_label == "async caller"
    assert finished(tasks.add.get_result(result_id)).return_value == 11


def test_json_arguments_of_every_kind_read_back_the_same_after_the_worker_stored_them(
    worker: WorkerProcess,
) -> None:
    value = {"flag": True, "nothing": None, "list": [1.5, "it's", {"n": -2}], "long": "x" * 2000}
    with requester_scope(Requester.cli("test")):
        result = tasks.echo.enqueue(value)
    finished(result)

    assert result.return_value == value
    assert result.args == [value]


def test_a_raising_task_fails_with_its_exception_class_and_traceback(
    worker: WorkerProcess,
) -> None:
    with requester_scope(Requester.cli("test")):
        result = tasks.fail_loudly.enqueue("no disk left")
    finished(result)

    assert result.status == TaskResultStatus.FAILED
    [error] = result.errors
    assert error.exception_class is tasks.ReportFailure
    assert "ReportFailure: no disk left" in error.traceback
    assert "raise ReportFailure(reason)" in error.traceback
    with pytest.raises(ValueError, match="failed"):
        result.return_value  # noqa: B018
    assert job_log_since(task_id=result.id).lines == [
        "about to fail",
        "!! ReportFailure: no disk left",
    ]


def test_a_non_json_argument_is_refused_at_enqueue_and_nothing_is_recorded() -> None:
    with pytest.raises(TypeError, match="arguments must be JSON"):
        tasks.add.enqueue(timezone.now(), 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="arguments must be JSON"):
        tasks.add.enqueue(float("nan"), 1)  # type: ignore[arg-type]

    assert not ours(Job) and not ours(StoredResult)


def test_a_queue_the_backend_does_not_list_is_refused_with_the_queues_it_has() -> None:
    with pytest.raises(InvalidTaskError, match=r"queue 'nope' is not one of .*default, media"):
        tasks.add.using(queue_name="nope")
    # A real Celery queue, but not one this backend was given.
    with pytest.raises(InvalidTaskError, match="queue 'infra' is not one of"):
        tasks.add.using(queue_name="infra")

    assert not ours(Job)


def test_priority_is_refused_because_sqs_cannot_honour_it() -> None:
    assert OpsqueueBackend.supports_priority is False
    with pytest.raises(InvalidTaskError, match=r"cannot honour priority=5.*queue_name"):
        tasks.add.using(priority=5)


def test_a_task_on_another_queue_runs_there_with_that_queue_recorded(
    worker: WorkerProcess,
) -> None:
    with requester_scope(Requester.cli("test")):
        result = tasks.add.using(queue_name="media").enqueue(1, 2)

    assert Job.objects.get(task_id=result.id).queue == "media"
    finished(result)
    assert result.return_value == 3
    assert result.task.queue_name == "media"


def test_a_task_runs_under_the_time_limits_of_the_queue_it_is_sent_to(
    worker: WorkerProcess,
) -> None:
    with requester_scope(Requester.cli("test")):
        on_media = tasks.time_limits.enqueue()
        on_default = tasks.time_limits.using(queue_name="default").enqueue()

    media, default = QUEUES["media"], QUEUES["default"]
    assert finished(on_media).return_value == [media.time_limit, media.soft_time_limit]
    assert finished(on_default).return_value == [default.time_limit, default.soft_time_limit]


def test_broker_unreachable_at_enqueue_raises_and_leaves_nothing_behind(
    sqs_queues: AwsEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{free_port()}")
    drop_broker_connections()
    try:
        with (
            pytest.raises(BrokerUnavailable, match="unreachable"),
            requester_scope(Requester.cli("test")),
            transaction.atomic(),
        ):
            tasks.add.enqueue(1, 2)
    finally:
        monkeypatch.undo()
        drop_broker_connections()

    assert not ours(Job) and not ours(StoredResult)


def test_takes_context_gives_the_task_its_own_result_and_attempt(worker: WorkerProcess) -> None:
    with requester_scope(Requester.cli("test")):
        result = tasks.describe_context.enqueue("ctx")
    finished(result)

    assert result.return_value == {
        "label": "ctx",
        "id": result.id,
        "attempt": 1,
        "status": "RUNNING",
    }
    assert result.args == ["ctx"]


def test_a_job_enqueued_by_a_task_names_that_job_as_its_requester(
    worker: WorkerProcess,
) -> None:
    with requester_scope(Requester.cli("test")):
        parent = tasks.enqueue_follow_up.enqueue(4)
    child_id = finished(parent).return_value
    assert child_id is not None
    child = finished(tasks.add.get_result(child_id))

    assert child.return_value == 5
    job = Job.objects.get(task_id=child.id)
    assert (job.requester_kind, job.requester_label) == (
        RequesterKind.SYSTEM,
        f"tests.workers.tasks_app.tasks.enqueue_follow_up [{parent.id}]",
    )


def test_a_command_states_its_requester_with_requester_scope(worker: WorkerProcess) -> None:
    with requester_scope(Requester.cli("import_courses")), transaction.atomic():
        result = tasks.add.enqueue(1, 1)

    job = Job.objects.get(task_id=result.id)
    assert (job.requester_kind, job.requester_label) == (RequesterKind.CLI, "import_courses")


def test_get_result_reads_the_stored_records_from_another_process(
    worker: WorkerProcess, worker_env: dict[str, str]
) -> None:
    with requester_scope(Requester.cli("test")):
        result = tasks.add.enqueue(7, 8)
    finished(result)

    script = (
        "import django, json; django.setup();"
        "from workers.tasks_api import default_task_backend as b;"
        f"r = b.get_result({result.id!r});"
        "print(json.dumps([r.status, r.return_value, r.task.module_path, r.args]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **worker_env, "DJANGO_SETTINGS_MODULE": "project.settings"},
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert json.loads(out.splitlines()[-1]) == [
        "SUCCESSFUL",
        15,
        "tests.workers.tasks_app.tasks.add",
        [7, 8],
    ]


def test_get_result_of_an_unknown_id_or_another_tasks_id_is_refused(
    worker: WorkerProcess,
) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("no-such-job")
    with requester_scope(Requester.cli("test")):
        result = tasks.add.enqueue(1, 1)
    assert default_task_backend.get_result(result.id).status == TaskResultStatus.READY
    with pytest.raises(Exception, match="Task does not match"):
        tasks.fail_loudly.get_result(result.id)


def test_a_task_called_outside_a_job_logs_to_the_python_log_and_stores_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="workers.tasks_backend"):
        assert tasks.add.call(2, 2) == 4
        get_job_log().set_progress(1, 2)

    assert "(no job) adding 2 and 2" in caplog.text
    assert "(no job) progress 1/2" in caplog.text
    assert not JobLogChunk.objects.filter(text__contains="adding 2 and 2").exists()


def test_the_documented_api_point_by_point(worker: WorkerProcess) -> None:
    """What the Tasks framework documents for a backend, on this one."""
    backend = task_backends["default"]
    assert isinstance(backend, OpsqueueBackend)
    assert backend.supports_defer and backend.supports_get_result
    assert backend.supports_async_task and not backend.supports_priority
    assert isinstance(tasks.add, Task)
    assert tasks.add.name == "add" and tasks.add.module_path.endswith("tasks.add")
    assert tasks.add.call(2, 2) == 4  # called in-process, no job
    with requester_scope(Requester.cli("test")):
        result = tasks.add.enqueue(a=1, b=2)
    assert isinstance(result, TaskResult)
    assert result.status == TaskResultStatus.READY and not result.is_finished
    assert (result.args, result.kwargs, result.backend) == ([], {"a": 1, "b": 2}, "default")
    assert result.errors == [] and result.worker_ids == [] and result.attempts == 0
    with pytest.raises(ValueError, match="not finished"):
        result.return_value  # noqa: B018
    stored = backend.get_result(result.id)
    assert (stored.id, stored.kwargs, stored.status) == (result.id, {"a": 1, "b": 2}, "READY")
    with pytest.raises(InvalidTaskError, match="aware"):
        tasks.add.using(run_after=timezone.now().replace(tzinfo=None))


def test_system_checks_report_a_queue_opsqueue_lacks_and_a_task_workers_never_import() -> None:
    config = {
        "default": {
            "BACKEND": "workers.tasks_backend.OpsqueueBackend",
            "QUEUES": ["default", "nowhere"],
        }
    }
    # A task in a module that is no app's tasks.py: workers would not know it.
    misplaced = types.ModuleType("tests.workers.tasks_app.misplaced")
    sys.modules[misplaced.__name__] = misplaced
    exec(
        "from workers.tasks_api import task\n@task\ndef stray() -> None:\n    pass\n",
        misplaced.__dict__,
    )
    try:
        with override_settings(TASKS=config):
            messages = list(task_backends["default"].check())
            everything = checks.run_checks()
    finally:
        del sys.modules[misplaced.__name__]

    ids = {message.id for message in messages}
    assert ids == {"opsqueue.E101", "opsqueue.E102"}
    text = " ".join(message.msg for message in messages)
    assert "'nowhere'" in text and "tests.workers.tasks_app.misplaced.stray" in text
    assert {"opsqueue.E101", "opsqueue.E102"} <= {message.id for message in everything}
    # Configured as shipped, with its tasks where workers find them, nothing is reported.
    assert list(task_backends["default"].check()) == []


def test_the_documented_example_runs(worker: WorkerProcess) -> None:
    page = Path(BASE_DIR, "docs", "tasks-api.md").read_text()
    section = page.split("# Django's Tasks API", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]
    definition, use = blocks[0], blocks[1]
    # The task as the docs write it is the one the test app's tasks.py holds.
    definition_body = definition.split("@task\n", 1)[1]
    assert definition_body in Path(tasks.__file__).read_text()

    namespace: dict[str, object] = {}
    with requester_scope(Requester.cli("test")):
        exec(use.replace("myapp.tasks", "tests.workers.tasks_app.tasks"), namespace)
    result = namespace["result"]
    assert isinstance(result, TaskResult)
    assert finished(result).return_value == "welcomed 7"


def test_a_task_defined_anywhere_but_module_level_is_refused() -> None:
    def local() -> None:
        pass

    with pytest.raises(InvalidTaskError, match="module level"):
        task(local)
