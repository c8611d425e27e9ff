"""Dead letters: garbage goes to the dead-letter queue at once, lost jobs end visibly, and
staff see, redrive and discard what is in the dead-letter queues."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django_celery_results.models import TaskResult

from tests.support.broker import publishing_to
from tests.support.browser import Tour, wait_for
from tests.support.jobs import diagnostic_queued, job_status
from tests.support.servers import (
    AwsEndpoint,
    SqsFaults,
    WorkerProcess,
    new_queue_prefix,
    queue_with_dead_letters,
    wait_until,
)
from workers.dead_letters import REASON_ATTRIBUTE, dead_letter_redrive
from workers.enqueue import Requester
from workers.models import DiagnosticRun, Job
from workers.services import diagnostic_run_start

pytestmark = pytest.mark.django_db(transaction=True)


def _empty(sqs: Any, url: str) -> None:
    # Not PurgeQueue: SQS allows one a minute per queue.
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def _count(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def _letter_row(html: str, task_id: str) -> tuple[str, str]:
    """A job's row in the operations page's dead-letter list: its message id and HTML."""
    row = re.search(rf'<tr data-message-id="([^"]+)" data-task-id="{task_id}">.*?</tr>', html, re.S)
    assert row is not None, html
    return row.group(1), row.group(0)


def _job_page_note(client: Client, task_id: str) -> tuple[str, str, str]:
    """The job's page (its URL and HTML) and its dead-letter note, which must be there."""
    result = TaskResult.objects.get(task_id=task_id)
    url = f"/admin/django_celery_results/taskresult/{result.pk}/change/"
    page = client.get(url).content.decode()
    note = re.search(r'<div id="job-dead-lettered" class="errornote">(.*?)</div>', page, re.S)
    assert note is not None, page
    return url, page, note.group(1)


def test_a_message_that_is_no_job_goes_to_the_dead_letter_queue_on_first_receipt(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    prefix = new_queue_prefix()
    sqs = aws.client("sqs")
    url, dlq_url = queue_with_dead_letters(sqs, prefix, "default", visibility=600)
    worker = WorkerProcess(
        env={**worker_env, "SQS_QUEUE_PREFIX": prefix}, queues=["default"], log_dir=run_dir
    )
    try:
        sqs.send_message(QueueUrl=url, MessageBody="not a job at all")
        # Far sooner than the five 600 s receives the redrive policy would wait for.
        # The worker sends the copy, then deletes the original: both are waited for.
        wait_until(
            lambda: _count(sqs, dlq_url) == 1 and _count(sqs, url) == 0,
            timeout=30,
            message="the message moved to the dead-letter queue",
        )
        message = sqs.receive_message(QueueUrl=dlq_url, MessageAttributeNames=["All"])["Messages"][
            0
        ]
        assert message["Body"] == "not a job at all"
        reason = message["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]
        assert reason
        wait_until(lambda: "moved a message" in worker.log_text(), message="the worker's log line")
    finally:
        worker.stop()


def _naming_task(body: str, task_name: str) -> str:
    """A Celery message body as kombu puts it on SQS, its task header set to `task_name`."""
    envelope = json.loads(base64.b64decode(body))
    envelope["headers"]["task"] = task_name
    return base64.b64encode(json.dumps(envelope).encode()).decode()


def test_a_job_no_worker_can_run_says_on_its_page_that_its_message_is_dead_lettered(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint, admin_client: Client
) -> None:
    """A worker that does not know a job's task (an older release's, or a task renamed
    without its old name) moves the message to the dead-letter queue at once. The job read
    "Queued" for good; its page now says where the message is and what to do, and a
    redrive, which puts the message back on its queue, takes the note away."""
    prefix = new_queue_prefix()
    sqs = aws.client("sqs")
    url, dlq_url = queue_with_dead_letters(sqs, prefix, "default", visibility=600)
    with publishing_to(prefix):
        run = diagnostic_run_start(requester=Requester.cli("test"), lines=3, duration_seconds=0.1)
    sent = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"][0]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=sent["ReceiptHandle"])
    unknown = _naming_task(sent["Body"], "workers.tasks.retired_long_ago")
    sqs.send_message(QueueUrl=url, MessageBody=unknown)
    worker = WorkerProcess(
        env={**worker_env, "SQS_QUEUE_PREFIX": prefix}, queues=["default"], log_dir=run_dir
    )
    try:
        wait_until(
            lambda: Job.objects.filter(
                task_id=run.task_id, dead_lettered_at__isnull=False
            ).exists(),
            timeout=30,
            message="the job marked as dead-lettered",
        )
    finally:
        worker.stop()
    assert _count(sqs, dlq_url) == 1

    job_page, page, note = _job_page_note(admin_client, run.task_id)
    assert "Its message was moved to the default dead-letter queue" in note
    assert "unknown task" in note and "workers.tasks.retired_long_ago" in note
    assert 'id="job-dead-letters-link"' in note
    assert 'id="job-no-consumer"' not in page, "a worker did receive it"
    listed = admin_client.get("/admin/django_celery_results/taskresult/").content.decode()
    assert "Queued (PENDING) · in the dead-letter queue" in listed

    # Sent back, as the operations page's Redrive does: a worker may run it again.
    with override_settings(SQS_QUEUE_PREFIX=prefix):
        message_id = sqs.receive_message(QueueUrl=dlq_url, VisibilityTimeout=0)["Messages"][0][
            "MessageId"
        ]
        dead_letter_redrive(
            queue="default",
            message_id=message_id,
            user=get_user_model().objects.get(username="admin"),
        )
    assert _count(sqs, url) == 1
    assert 'id="job-dead-lettered"' not in admin_client.get(job_page).content.decode()


def test_a_job_whose_message_sqs_moved_to_the_dead_letter_queue_says_so_on_its_page(
    aws: AwsEndpoint, admin_client: Client
) -> None:
    """SQS's redrive policy moves a message received five times without success and tells
    nobody: the job read "Queued" for good. The periodic depth sample finds the dead-letter
    queue holding messages and marks their jobs, once."""
    from workers.tasks import queue_depths_record

    prefix = new_queue_prefix()
    sqs = aws.client("sqs")
    url, dlq_url = queue_with_dead_letters(sqs, prefix, "default")
    with publishing_to(prefix):
        run = diagnostic_run_start(requester=Requester.cli("test"), lines=3, duration_seconds=0.1)
    # Received five times and never finished (a worker killed each time), then moved.
    for _ in range(5):
        assert sqs.receive_message(QueueUrl=url, VisibilityTimeout=0, WaitTimeSeconds=5)["Messages"]
    assert not sqs.receive_message(QueueUrl=url, VisibilityTimeout=0).get("Messages")
    assert _count(sqs, dlq_url) == 1
    job = Job.objects.filter(task_id=run.task_id)
    assert job.get().dead_lettered_at is None

    with override_settings(SQS_QUEUE_PREFIX=prefix):
        queue_depths_record.apply().get()
    marked = job.get().dead_lettered_at
    assert marked is not None

    _, _, note = _job_page_note(admin_client, run.task_id)
    assert "Its message was moved to the default dead-letter queue" in note
    assert "SQS moved it after it was received five times without success" in note
    listed = admin_client.get("/admin/django_celery_results/taskresult/").content.decode()
    assert "Queued (PENDING) · in the dead-letter queue" in listed

    # Sampled again, the message still there: the note keeps its time.
    with override_settings(SQS_QUEUE_PREFIX=prefix):
        queue_depths_record.apply().get()
    assert job.get().dead_lettered_at == marked
    assert _count(sqs, dlq_url) == 1, "looking took nothing out"


@pytest.mark.waits
def test_a_job_whose_worker_is_gone_ends_failure_worker_lost_with_its_domain_row(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    from workers.reconcile import jobs_mark_lost

    prefix = new_queue_prefix()
    sqs = aws.client("sqs")
    url, _ = queue_with_dead_letters(sqs, prefix, "default", visibility=600)
    worker = WorkerProcess(
        env={**worker_env, "SQS_QUEUE_PREFIX": prefix, "WORKER_HEARTBEAT_SECONDS": "1"},
        queues=["default"],
        log_dir=run_dir,
    )
    try:
        with publishing_to(prefix):
            run = diagnostic_run_start(
                requester=Requester.cli("test"), lines=60, duration_seconds=60
            )
        wait_until(
            lambda: TaskResult.objects.filter(task_id=run.task_id, status="STARTED").exists(),
            message="the job to start",
        )
        # While its worker beats, the job is not lost, however short the window.
        with override_settings(SQS_VISIBILITY_TIMEOUT_SECONDS=1, WORKER_HEARTBEAT_SECONDS=1):
            assert jobs_mark_lost() == []
            worker.kill()
            lost = wait_until(jobs_mark_lost, timeout=30, message="the reconciler to act")
        assert lost == [run.task_id]
        result = TaskResult.objects.get(task_id=run.task_id)
        assert result.status == "FAILURE"
        assert "worker lost" in (result.traceback or "")
        run.refresh_from_db()
        assert run.state == DiagnosticRun.State.FAILED
        assert run.error.startswith("worker lost: ") and worker.hostname in run.error
    finally:
        worker.stop()
        sqs.purge_queue(QueueUrl=url)


def _dead_letter_a_job_and_garbage(aws: AwsEndpoint) -> tuple[DiagnosticRun, str]:
    """A real job's message and a garbage one in the session's default dead-letter queue,
    sampled so the operations page looks at it. Returns the run and the queue's URL."""
    from workers.broker import dead_letter_queue_name
    from workers.queue_depths import queue_depths_record

    sqs = aws.client("sqs")
    prefix = new_queue_prefix()
    holding = sqs.create_queue(QueueName=f"{prefix}default")["QueueUrl"]
    with publishing_to(prefix):
        run = diagnostic_run_start(requester=Requester.cli("test"), lines=3, duration_seconds=0.1)
    body = sqs.receive_message(QueueUrl=holding, WaitTimeSeconds=5)["Messages"][0]["Body"]
    sqs.delete_queue(QueueUrl=holding)
    dlq = sqs.get_queue_url(QueueName=dead_letter_queue_name("default"))["QueueUrl"]
    _empty(sqs, dlq)
    sqs.send_message(QueueUrl=dlq, MessageBody=body)
    sqs.send_message(QueueUrl=dlq, MessageBody="garbage that is no job")
    queue_depths_record()
    return run, dlq


@pytest.mark.browser
def test_staff_redrive_a_dead_job_and_discard_garbage_by_clicking_on_the_operations_page(
    tour: Tour, aws: AwsEndpoint
) -> None:
    from playwright.sync_api import expect

    from workers.models import DeadLetterAction

    run, dlq = _dead_letter_a_job_and_garbage(aws)
    page = tour.page
    page.locator("#jobs-home").get_by_role("link", name="Operations").click()
    section = page.locator('#dead-letters table[data-dlq="default"]')
    job_row = section.locator(f'tr[data-task-id="{run.task_id}"]')
    expect(job_row).to_contain_text("workers.tasks.diagnostic_run_execute")
    garbage_row = section.locator("tr", has_text="garbage that is no job")
    expect(garbage_row).to_contain_text("not a job")
    tour.screenshot("operations-dead-letters")

    with tour.submitted(302):
        job_row.get_by_role("button", name="Redrive").click()
    expect(page.locator("ul.messagelist")).to_contain_text("sent back to the default queue")
    wait_for(
        lambda: TaskResult.objects.filter(task_id=run.task_id, status="SUCCESS").exists(), page
    )

    with tour.submitted(302):
        page.locator("#dead-letters tr", has_text="garbage that is no job").get_by_role(
            "button", name="Discard"
        ).click()
    expect(page.locator("ul.messagelist")).to_contain_text(
        "The message was discarded from the default dead-letter queue."
    )
    assert _count(aws.client("sqs"), dlq) == 0

    actions = list(
        DeadLetterAction.objects.order_by("at").values_list("kind", "task_id", "username")
    )
    assert actions == [("redrive", run.task_id, "ops"), ("discard", "", "ops")]
    tour.assert_pages_sound()


@pytest.mark.browser
def test_discarding_a_job_s_dead_letter_cancels_the_job_whose_page_says_who_did_it(
    tour: Tour, aws: AwsEndpoint
) -> None:
    """Its message discarded, a job never runs; its page went on saying "Queued (PENDING)"
    and its diagnostic run "Queued", for good. Both now end, saying why and who."""
    from playwright.sync_api import expect

    run, dlq = _dead_letter_a_job_and_garbage(aws)
    page = tour.page
    page.locator("#jobs-home").get_by_role("link", name="Operations").click()
    job_row = page.locator(f'#dead-letters tr[data-task-id="{run.task_id}"]')
    with tour.submitted(302):
        job_row.get_by_role("button", name="Discard").click()
    message = page.locator("ul.messagelist")
    expect(message).to_contain_text(
        f"The job workers.tasks.diagnostic_run_execute [{run.task_id}] was discarded from the "
        "default dead-letter queue: it will not run."
    )
    expect(page.locator(f'#dead-letters tr[data-task-id="{run.task_id}"]')).to_have_count(0)
    assert _count(aws.client("sqs"), dlq) == 1  # the garbage, left alone

    message.get_by_role("link", name=run.task_id, exact=False).click()
    expect(page.locator("#job-live-status")).to_have_text("Cancelled (REVOKED)")
    expect(page.locator("#job-outcome")).to_contain_text(
        "its message was discarded from the default dead-letter queue by ops"
    )
    expect(page.locator("#job-discarded")).to_contain_text("by ops")
    expect(page.locator("#job-subject-state")).to_have_text("Failed")
    run.refresh_from_db()
    assert run.state == DiagnosticRun.State.FAILED
    assert run.error == "its message was discarded from the default dead-letter queue by ops"
    tour.assert_pages_sound()


def test_staff_who_may_only_view_operations_see_dead_letters_but_cannot_act_on_them(
    aws: AwsEndpoint, sqs_queues: AwsEndpoint, client: Client
) -> None:
    from workers.models import DeadLetterAction

    run, dlq = _dead_letter_a_job_and_garbage(aws)
    viewer = get_user_model().objects.create_user("viewer", password="pw-viewer-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_operations"))
    client.force_login(viewer)

    html = client.get("/ops/operations/").content.decode()
    assert f'data-task-id="{run.task_id}"' in html
    assert "Redrive" not in html and "Discard" not in html
    message_id = re.search(r'data-message-id="([^"]+)"', html).group(1)  # type: ignore[union-attr]
    url = f"/ops/operations/dead-letters/default/{message_id}/discard/"
    assert client.post(url).status_code == 403
    assert _count(aws.client("sqs"), dlq) == 2
    assert not DeadLetterAction.objects.exists()


def test_looking_at_dead_letters_changes_nothing_the_page_shows_of_them(
    aws: AwsEndpoint, sqs_queues: AwsEndpoint, client: Client
) -> None:
    """The page peeks at a dead-letter queue by receiving from it; it showed SQS's receive
    count, which its own looks raised (1, then 2 on the next view)."""
    _dead_letter_a_job_and_garbage(aws)
    viewer = get_user_model().objects.create_user("viewer", password="pw-viewer-1", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_operations"))
    client.force_login(viewer)

    def letters() -> list[str]:
        html = client.get("/ops/operations/").content.decode()
        rows = re.findall(r"<tr data-message-id=.*?</tr>", html, re.S)
        assert len(rows) == 2, html
        return sorted(rows)

    first = letters()
    assert letters() == first and letters() == first


def test_redrive_needs_the_operate_permission_of_the_job_s_family_and_is_not_offered_without(
    aws: AwsEndpoint, sqs_queues: AwsEndpoint, client: Client
) -> None:
    from workers.models import DeadLetterAction

    run, dlq = _dead_letter_a_job_and_garbage(aws)
    manager = get_user_model().objects.create_user("manager", is_staff=True)
    manager.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_operations", "manage_dead_letters"])
    )
    client.force_login(manager)

    html = client.get("/ops/operations/").content.decode()
    row = re.search(
        rf'<tr data-message-id="([^"]+)" data-task-id="{run.task_id}">.*?</tr>', html, re.S
    )
    assert row is not None
    assert "Redrive" not in html  # neither the diagnostic job nor the garbage
    url = f"/ops/operations/dead-letters/default/{row.group(1)}/redrive/"
    refused = client.post(url, follow=True).content.decode()
    assert "Not sent back: you may not start workers.tasks.diagnostic_run_execute jobs" in refused
    assert _count(aws.client("sqs"), dlq) == 2
    assert not DeadLetterAction.objects.exists()

    manager.user_permissions.add(Permission.objects.get(codename="run_diagnostic"))
    client.force_login(get_user_model().objects.get(pk=manager.pk))
    assert html.count("Redrive") < client.get("/ops/operations/").content.decode().count("Redrive")
    wait_until(lambda: _count(aws.client("sqs"), dlq) == 2, message="the refused letter back")
    sent = client.post(url, follow=True).content.decode()
    assert "sent back to the default queue" in sent
    assert list(DeadLetterAction.objects.values_list("kind", "task_id")) == [
        ("redrive", run.task_id)
    ]


def test_discarding_a_job_s_dead_letter_needs_the_act_permission_of_its_family(
    aws: AwsEndpoint, sqs_queues: AwsEndpoint, client: Client
) -> None:
    """Discarding a job's message ends the job (Cancelled), as the Jobs dashboard's discard
    does, which needs the family's act permission; the dead-letter Discard asked only for
    "Can redrive or discard dead letters", so such a person ended any family's job (a
    terraform run's). A message that is no job needs nothing more."""
    from workers.models import DeadLetterAction

    run, dlq = _dead_letter_a_job_and_garbage(aws)
    manager = get_user_model().objects.create_user("manager", is_staff=True)
    manager.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_operations", "manage_dead_letters"])
    )
    client.force_login(manager)

    html = client.get("/ops/operations/").content.decode()
    message_id, row = _letter_row(html, run.task_id)
    assert "Discard" not in row
    rows = re.findall(r"<tr data-message-id=.*?</tr>", html, re.S)
    (garbage,) = [r for r in rows if "garbage that is no job" in r]
    assert "Discard" in garbage
    url = f"/ops/operations/dead-letters/default/{message_id}/discard/"
    refused = client.post(url, follow=True).content.decode()
    assert "Not discarded: you may not discard workers.tasks.diagnostic_run_execute jobs" in refused
    assert TaskResult.objects.get(task_id=run.task_id).status == "PENDING"
    assert Job.objects.get(task_id=run.task_id).discarded_at is None
    assert not DeadLetterAction.objects.exists()
    wait_until(lambda: _count(aws.client("sqs"), dlq) == 2, message="the refused letter back")

    manager.user_permissions.add(Permission.objects.get(codename="act_on_diagnostic_jobs"))
    client.force_login(get_user_model().objects.get(pk=manager.pk))
    assert "Discard" in _letter_row(client.get("/ops/operations/").content.decode(), run.task_id)[1]
    done = client.post(url, follow=True).content.decode()
    assert "dead-letter queue: it will not run" in done
    assert TaskResult.objects.get(task_id=run.task_id).status == "REVOKED"
    assert list(DeadLetterAction.objects.values_list("kind", "task_id")) == [
        ("discard", run.task_id)
    ]


@pytest.mark.django_db
def test_a_hanging_sqs_costs_the_operations_page_one_short_question_not_one_per_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SQS that accepts connections and never answers (frozen, not down): the page asks
    about one dead-letter queue, with a page's short timeouts, and says why the others
    were not asked, instead of waiting out a long timeout, with retries, for each."""
    import socket

    from django.utils import timezone

    from workers.models import QueueDepth
    from workers.queues import QUEUES

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections complete in the kernel; nothing ever reads or answers
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{silent.getsockname()[1]}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    for queue in QUEUES:
        QueueDepth.objects.create(
            queue=queue,
            visible=0,
            in_flight=0,
            delayed=0,
            dead_letters=1,
            sampled_at=timezone.now(),
        )
    viewer = get_user_model().objects.create_user("ops", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_operations"))
    client = Client()
    client.force_login(viewer)
    try:
        html = client.get("/ops/operations/").content.decode()
        silent.setblocking(False)
        asked = 0
        while True:
            try:
                silent.accept()[0].close()
            except BlockingIOError:
                break
            asked += 1
    finally:
        silent.close()
    assert asked == 1, "one connection, one question, no retry"
    first, *others = [q for q in QUEUES]
    assert f"SQS did not answer about the {first} queue" in html
    assert html.count("Not asked: SQS did not answer") == len(others)
    # The banner knows from that one question; it does not ask a second time.
    assert 'id="ops-sqs-unreachable"' in html


@pytest.mark.waits
def test_discarding_the_dead_letter_of_a_running_or_ended_job_leaves_the_job_alone(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint, admin_client: Client
) -> None:
    """SQS refuses ChangeMessageVisibility (a partial outage): a running job's message comes
    back every visibility timeout, and after maxReceiveCount receives SQS moves it to the
    dead-letter queue while the job runs on. Discarding that letter ended the running job
    Cancelled (REVOKED) and marked it discarded; now it deletes the message only, and says
    so. The list says which letters' jobs are running or ended, and a letter whose job
    ended is not offered for a redrive (it would run the job again)."""
    from django.utils import timezone

    from workers.models import QueueDepth

    visibility = 4
    prefix = new_queue_prefix()
    sqs = aws.client("sqs")
    _, dlq_url = queue_with_dead_letters(
        sqs, prefix, "infra", visibility=visibility, max_receives=1
    )
    faults = SqsFaults(aws)
    faults.failing.add("ChangeMessageVisibility")
    # Room for a poll beside the two running jobs: SQS moves a message when it is received.
    worker = WorkerProcess(
        env={
            **worker_env,
            "SQS_QUEUE_PREFIX": prefix,
            "SQS_VISIBILITY_TIMEOUT_SECONDS": str(visibility),
            "AWS_ENDPOINT_URL_SQS": faults.url,
        },
        queues=["infra"],
        log_dir=run_dir,
        concurrency=3,
    )
    try:
        long = diagnostic_queued(prefix, queue="infra", duration_seconds=40, lines=40)
        short = diagnostic_queued(prefix, queue="infra", duration_seconds=12, lines=12)
        wait_until(
            lambda: _count(sqs, dlq_url) == 2,
            timeout=40,
            message="SQS to move both running jobs' messages to the dead-letter queue",
        )
        assert job_status(long.task_id) == job_status(short.task_id) == "STARTED"
        QueueDepth.objects.create(queue="infra", dead_letters=2, sampled_at=timezone.now())

        with override_settings(SQS_QUEUE_PREFIX=prefix):
            html = admin_client.get("/ops/operations/").content.decode()
            message_id, row = _letter_row(html, long.task_id)
            assert 'data-fate="running"' in row
            page = admin_client.post(
                f"/ops/operations/dead-letters/infra/{message_id}/discard/", follow=True
            ).content.decode()
        # The running job was left alone: not cancelled, not marked discarded.
        assert job_status(long.task_id) == "STARTED"
        assert Job.objects.get(task_id=long.task_id).discarded_at is None
        assert "the job is running and was left alone" in page
        assert _count(sqs, dlq_url) == 1

        wait_until(
            lambda: job_status(short.task_id) == "SUCCESS", timeout=40, message="the short job"
        )
        with override_settings(SQS_QUEUE_PREFIX=prefix):
            html = admin_client.get("/ops/operations/").content.decode()
            message_id, row = _letter_row(html, short.task_id)
            assert 'data-fate="ended"' in row and "Succeeded (SUCCESS)" in row
            assert "Redrive" not in row
            refused = admin_client.post(
                f"/ops/operations/dead-letters/infra/{message_id}/redrive/", follow=True
            ).content.decode()
            assert "Not sent back: its job already ended (Succeeded (SUCCESS))" in refused
            wait_until(lambda: _count(sqs, dlq_url) == 1, message="the refused letter back")
            page = admin_client.post(
                f"/ops/operations/dead-letters/infra/{message_id}/discard/", follow=True
            ).content.decode()
        assert "the job had ended (Succeeded (SUCCESS)) and was left as it was" in page
        assert _count(sqs, dlq_url) == 0
        assert Job.objects.get(task_id=short.task_id).discarded_at is None

        wait_until(
            lambda: job_status(long.task_id) == "SUCCESS", timeout=60, message="the long job"
        )
        long.refresh_from_db()
        assert (long.state, long.attempts, long.error) == (DiagnosticRun.State.SUCCEEDED, 1, "")
    finally:
        worker.stop()
        faults.stop()
