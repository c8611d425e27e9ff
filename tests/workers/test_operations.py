"""The operations page: built from the database only, staff with permission only."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import transaction
from django.test import Client, override_settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from tests.support.broker import publishing_to
from tests.support.jobs import job_status
from tests.support.monitoring import sqs_queues_named
from tests.support.servers import AwsEndpoint, WorkerProcess, new_queue_prefix, wait_until
from workers import jobs
from workers.devstack import free_port
from workers.enqueue import Requester, job_enqueue
from workers.models import QueueDepth, WorkerHeartbeat
from workers.monitoring import monitoring_health
from workers.tasks import queue_depths_record

pytestmark = pytest.mark.django_db

URL = "/ops/operations/"


def result(
    status: str, *, created_ago: timedelta, seconds: float = 1.0, name: str = "app.tasks.work"
) -> TaskResult:
    created = timezone.now() - created_ago
    finished = status in {"SUCCESS", "FAILURE", "REVOKED"}
    row = TaskResult.objects.create(task_id=str(uuid.uuid4()), task_name=name, status=status)
    # date_created and date_done are stamped on save (date_done on every save, finished
    # or not, as django-celery-results does); put them in the past.
    TaskResult.objects.filter(pk=row.pk).update(
        date_created=created,
        date_started=created if status != "PENDING" else None,
        date_done=created + timedelta(seconds=seconds) if finished else created,
    )
    return row


def cell(html: str, row_attr: str, css: str) -> str:
    match = re.search(rf'<tr {row_attr}>.*?class="[^"]*\b{css}\b[^"]*">([^<]*)<', html, re.S)
    assert match, f"no {css} cell in row {row_attr}"
    return match.group(1).strip()


@pytest.fixture
def ops_client() -> Client:
    user = get_user_model().objects.create_user("ops", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_operations"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def queues_with_messages(sqs_queues: AwsEndpoint) -> Iterator[str]:
    """Own SQS queues holding known numbers of visible, in-flight, delayed and dead messages."""
    prefix = new_queue_prefix()
    with override_settings(SQS_QUEUE_PREFIX=prefix):
        call_command("sqs_queues", stdout=open(os.devnull, "w"))  # noqa: SIM115
        sqs = sqs_queues.client("sqs")
        media = sqs.get_queue_url(QueueName=f"{prefix}media")["QueueUrl"]
        for n in range(5):
            sqs.send_message(QueueUrl=media, MessageBody=f"visible {n}")
        sqs.receive_message(QueueUrl=media, MaxNumberOfMessages=2, VisibilityTimeout=300)
        for n in range(3):
            sqs.send_message(QueueUrl=media, MessageBody=f"later {n}", DelaySeconds=600)
        dlq = sqs.get_queue_url(QueueName=f"{prefix}infra-dlq")["QueueUrl"]
        sqs.send_message(QueueUrl=dlq, MessageBody="dead")
        yield prefix


def test_page_shows_the_queue_depths_the_periodic_task_recorded(
    ops_client: Client, queues_with_messages: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with override_settings(SQS_QUEUE_PREFIX=queues_with_messages):
        queue_depths_record()
    assert QueueDepth.objects.count() == 4

    # The page itself calls no AWS API: with every endpoint unreachable it renders the same.
    unreachable = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", unreachable)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", unreachable)
    html = ops_client.get(URL).content.decode()

    media = 'data-queue="media"'
    assert cell(html, media, "visible") == "3"
    assert cell(html, media, "in-flight") == "2"
    assert cell(html, media, "delayed") == "3"
    assert cell(html, media, "dead-letters") == "0"
    assert cell(html, 'data-queue="infra"', "dead-letters") == "1"
    assert cell(html, 'data-queue="default"', "visible") == "0"


@pytest.mark.django_db(transaction=True)
def test_the_sampling_job_counts_what_else_is_in_flight_on_its_queue_not_its_own_message(
    worker_env: dict[str, str], run_dir: Path, sqs_queues: AwsEndpoint
) -> None:
    """Run by a worker, the sample is taken while its own message is in flight on its
    queue: an idle default queue read "1 in flight" in every sample."""
    prefix = new_queue_prefix()
    sqs_queues_named(prefix)
    sqs = sqs_queues.client("sqs")
    default = sqs.get_queue_url(QueueName=f"{prefix}default")["QueueUrl"]
    sqs.send_message(QueueUrl=default, MessageBody="taken by someone else")
    assert sqs.receive_message(QueueUrl=default, VisibilityTimeout=300)["Messages"]
    worker = WorkerProcess(
        env={**worker_env, "SQS_QUEUE_PREFIX": prefix}, queues=["default"], log_dir=run_dir
    )
    try:
        with publishing_to(prefix), transaction.atomic():
            task_id = job_enqueue(jobs.QUEUE_DEPTHS_RECORD, requester=Requester.cli("test"))
        wait_until(lambda: job_status(task_id) == "SUCCESS", message="the sample")
    finally:
        worker.stop()
    depth = QueueDepth.objects.get(queue="default")
    assert (depth.visible, depth.in_flight, depth.error) == (0, 1, "")


def test_a_queued_job_sent_before_its_queue_was_made_again_ends_saying_its_message_was_lost(
    queues_with_messages: str,
) -> None:
    """A queue deleted and made again (or an endpoint restarted empty) starts empty: a job
    sent to the one it replaced read "Queued" for 7 days. One sent since waits as before."""
    from tests.workers.jobs import job_row
    from workers.models import Job

    before, since = (job_row("app.tasks.work", "PENDING", queue="media") for _ in range(2))
    depth_created = QueueDepth.objects.filter(queue="media")
    Job.objects.filter(task_id=before.task_id).update(sent_at=timezone.now() - timedelta(hours=1))
    Job.objects.filter(task_id=since.task_id).update(sent_at=timezone.now())

    with override_settings(SQS_QUEUE_PREFIX=queues_with_messages):
        queue_depths_record()

    assert depth_created.get().queue_created_at is not None
    before.refresh_from_db()
    since.refresh_from_db()
    assert since.status == "PENDING"
    assert before.status == "FAILURE"
    assert json.loads(before.result)["exc_type"] == "MessageLost"
    assert before.traceback.startswith(
        f"Its message was lost with the SQS queue {queues_with_messages}media: the queue was "
        "made again at "
    )
    assert before.traceback.endswith("Nothing ran; Retry sends it again.")


def test_a_record_whose_job_was_lost_with_its_queue_ends_failed_saying_why(
    queues_with_messages: str,
) -> None:
    """The job's record ends with it: a diagnostic run (as a database action, a release or
    a cover) read "Queued" for good once its job had ended MessageLost."""
    from tests.workers.jobs import job_row
    from workers.models import DiagnosticRun, Job

    job = job_row("workers.tasks.diagnostic_run_execute", "PENDING")
    Job.objects.filter(task_id=job.task_id).update(sent_at=timezone.now() - timedelta(hours=1))
    run = DiagnosticRun.objects.create(lines=1, duration_seconds=0, task_id=job.task_id)

    with override_settings(SQS_QUEUE_PREFIX=queues_with_messages):
        queue_depths_record()

    run.refresh_from_db()
    assert run.state == DiagnosticRun.State.FAILED and run.finished_at is not None
    assert run.error.startswith(
        f"its message was lost with the SQS queue {queues_with_messages}default: the queue was "
        "made again at "
    )


def test_queue_sample_failure_is_shown_with_the_last_known_counts(
    ops_client: Client, sqs_queues: AwsEndpoint
) -> None:
    QueueDepth.objects.create(queue="media", visible=7, sampled_at=timezone.now())
    with override_settings(SQS_QUEUE_PREFIX="no-such-prefix-"):
        queue_depths_record()
    depth = QueueDepth.objects.get(queue="media")
    assert depth.visible == 7
    # In words, with the way out: the raw "NonExistentQueue … GetQueueUrl" read as an outage.
    assert depth.error.startswith("The SQS queue no-such-prefix-media does not exist")
    page = ops_client.get(URL).content.decode()
    assert "last sample failed: The SQS queue no-such-prefix-media does not exist" in page
    assert "make the queues again with `manage.py sqs_queues`" in page


def test_page_counts_jobs_per_state_in_the_last_hour_and_day(ops_client: Client) -> None:
    for _ in range(3):
        result("SUCCESS", created_ago=timedelta(minutes=10))
    result("SUCCESS", created_ago=timedelta(hours=5))
    result("FAILURE", created_ago=timedelta(minutes=30), name="app.tasks.flaky")
    result("FAILURE", created_ago=timedelta(hours=3), name="app.tasks.flaky")
    result("FAILURE", created_ago=timedelta(hours=2), name="app.tasks.broken")
    result("PENDING", created_ago=timedelta(minutes=1))
    result("SUCCESS", created_ago=timedelta(days=3))  # outside every window

    html = ops_client.get(URL).content.decode()

    assert (
        cell(html, 'data-state="SUCCESS"', "hour"),
        cell(html, 'data-state="SUCCESS"', "day"),
    ) == ("3", "4")
    assert (
        cell(html, 'data-state="FAILURE"', "hour"),
        cell(html, 'data-state="FAILURE"', "day"),
    ) == ("1", "3")
    assert (
        cell(html, 'data-state="PENDING"', "hour"),
        cell(html, 'data-state="PENDING"', "day"),
    ) == ("1", "1")
    assert cell(html, 'data-state="STARTED"', "day") == "0"
    assert cell(html, 'data-task="app.tasks.flaky"', "failures") == "2"
    assert cell(html, 'data-task="app.tasks.broken"', "failures") == "1"
    assert html.index('data-task="app.tasks.flaky"') < html.index('data-task="app.tasks.broken"')


def test_slowest_tasks_are_ranked_by_mean_duration(ops_client: Client) -> None:
    for seconds in (10, 30):
        result("SUCCESS", created_ago=timedelta(hours=1), seconds=seconds, name="app.tasks.slow")
    result("SUCCESS", created_ago=timedelta(hours=1), seconds=2, name="app.tasks.quick")

    html = ops_client.get(URL).content.decode()
    slowest = html[html.index('id="slowest"') :]
    assert slowest.index("app.tasks.slow") < slowest.index("app.tasks.quick")
    assert cell(slowest, 'data-task="app.tasks.slow"', "runs") == "2"
    assert "20.0 s" in slowest and "30.0 s" in slowest


def test_chart_has_a_bar_per_hour_with_failures_in_red(ops_client: Client) -> None:
    # Both inside one clock hour (the previous one), whenever the test runs.
    now = timezone.now()
    in_last_hour = now - (now.replace(minute=20, second=0, microsecond=0) - timedelta(hours=1))
    result("SUCCESS", created_ago=in_last_hour, seconds=4)
    result("FAILURE", created_ago=in_last_hour + timedelta(minutes=1), seconds=2)

    html = ops_client.get(URL).content.decode()
    start = html.index('<svg class="ops-chart"')
    chart = html[start : html.index("</svg>", start)]
    assert chart.count('class="ok"') == 24
    assert chart.count('class="failed"') == 24
    assert "1 finished" not in chart and ": 2 finished, 1 failed" in chart
    assert 'class="mean"' in chart
    # Drawn on the server as inline SVG: nothing is loaded from elsewhere.
    assert not re.search(r'(src|href)="(https?:)?//', html)


def test_workers_are_listed_with_last_seen_and_online_state(ops_client: Client) -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        hostname="main@web1",
        pid=1,
        queues=["default", "media"],
        concurrency=2,
        started_at=now - timedelta(hours=1),
        last_seen_at=now,
        last_receive_at=now - timedelta(seconds=5),
        monitored=True,
    )
    WorkerHeartbeat.objects.create(
        hostname="infra@web2",
        pid=2,
        queues=["infra"],
        concurrency=1,
        started_at=now - timedelta(hours=3),
        last_seen_at=now - timedelta(hours=2),
    )
    WorkerHeartbeat.objects.create(
        hostname="gone@old",
        pid=3,
        queues=["infra"],
        concurrency=1,
        started_at=now - timedelta(days=3),
        last_seen_at=now - timedelta(days=2),
    )

    html = ops_client.get(URL).content.decode()
    workers = html[html.index('id="workers"') : html.index('id="states"')]
    assert 'data-worker="main@web1"' in workers and "default, media" in workers
    online = workers[
        workers.index('data-worker="main@web1"') : workers.index('data-worker="infra@web2"')
    ]
    assert 'class="online"' in online
    # Seen within the minute: "just now", not Django's "0 minutes ago".
    assert "online, just now" in online and "0 minutes" not in online
    offline = workers[workers.index('data-worker="infra@web2"') :]
    assert "offline" in offline and "(not in Flower)" in offline
    assert "offline, 2\xa0hours ago" in offline
    assert "gone@old" not in workers


@override_settings(WORKER_CONSUMER_STALLED_SECONDS=60)
def test_a_worker_alive_whose_consumer_has_not_received_lately_is_shown_stalled(
    ops_client: Client,
) -> None:
    now = timezone.now()
    for hostname, last_receive_at, started_at in (
        ("receiving@host", now - timedelta(seconds=20), now - timedelta(hours=1)),
        ("silent@host", now - timedelta(minutes=5), now - timedelta(hours=1)),
        ("never@host", None, now - timedelta(minutes=10)),
        ("starting@host", None, now - timedelta(seconds=10)),
    ):
        WorkerHeartbeat.objects.create(
            hostname=hostname,
            pid=1,
            queues=["default"],
            concurrency=1,
            started_at=started_at,
            last_seen_at=now,
            last_receive_at=last_receive_at,
        )

    html = ops_client.get(URL).content.decode()
    workers = html[html.index('id="workers"') : html.index('id="states"')]
    rows = {
        re.search(r'data-worker="([^"]+)"', row).group(1): row  # type: ignore[union-attr]
        for row in workers.split("<tr ")[1:]
        if "data-worker" in row
    }
    cells = {host: re.findall(r'<td class="([^"]+)">', row)[-1] for host, row in rows.items()}
    assert cells["receiving@host"] == "online"
    assert cells["starting@host"] == "online"
    assert cells["silent@host"] == "ops-bad stalled"
    assert cells["never@host"] == "ops-bad stalled"
    assert "consumer has not received from SQS for 5\xa0minutes" in rows["silent@host"]
    assert "has not received from SQS since it started" in rows["never@host"]

    # The same, for monitoring that reads the JSON: a beating process is not a consumer.
    metrics = {w["hostname"]: w for w in ops_client.get("/ops/metrics.json").json()["workers"]}
    assert metrics["silent@host"]["online"] and metrics["silent@host"]["stalled"]
    assert not metrics["silent@host"]["consuming"]
    assert metrics["receiving@host"]["consuming"] and not metrics["receiving@host"]["stalled"]
    assert metrics["never@host"]["last_receive_at"] is None


@override_settings(WORKER_CONSUMER_STALLED_SECONDS=60)
def test_a_worker_whose_polls_of_one_queue_fail_is_shown_not_consuming_that_queue_only(
    ops_client: Client,
) -> None:
    """Its media queue deleted in SQS, a worker's polls of media fail while those of default
    work: it looked "online" and consuming, and jobs waited on media without a word."""
    from workers.operations import queues_without_consumer, worker_rows

    now = timezone.now()
    media_last = now - timedelta(minutes=5)
    WorkerHeartbeat.objects.create(
        hostname="main@host",
        pid=1,
        queues=["default", "media"],
        concurrency=1,
        started_at=now - timedelta(hours=1),
        last_seen_at=now,
        last_receive_at=now - timedelta(seconds=2),
        queue_receives={
            "default": (now - timedelta(seconds=2)).isoformat(),
            "media": media_last.isoformat(),
        },
    )

    [worker_row] = [row for row in worker_rows(now=now) if row.heartbeat.hostname == "main@host"]
    assert worker_row.consuming and worker_row.consuming_queues == ["default"]
    # An hour on, with no other worker of the test session beating by then:
    later = now + timedelta(hours=1)
    WorkerHeartbeat.objects.filter(hostname="main@host").update(
        last_seen_at=later,
        last_receive_at=later,
        queue_receives={"default": later.isoformat(), "media": media_last.isoformat()},
    )
    idle = queues_without_consumer(now=later)
    assert idle["media"] == media_last and "default" not in idle
    WorkerHeartbeat.objects.filter(hostname="main@host").update(
        last_seen_at=now,
        queue_receives={"default": now.isoformat(), "media": media_last.isoformat()},
    )

    html = ops_client.get(URL).content.decode()
    metrics = ops_client.get("/ops/metrics.json").json()["workers"]
    row = html[html.index('data-worker="main@host"') :]
    row = row[: row.index("</tr>")]
    assert 'class="ops-bad stalled-queues"' in row
    assert "but not receiving from media: its polls of that queue have failed for over 60 s" in row
    [worker] = [w for w in metrics if w["hostname"] == "main@host"]
    assert worker["consuming"] and worker["stalled_queues"] == ["media"]


@override_settings(CELERY_MONITOR_URL="")
def test_without_a_monitoring_channel_the_page_works_and_says_why_flower_is_empty(
    ops_client: Client,
) -> None:
    response = ops_client.get(URL)
    assert response.status_code == 200
    assert (
        "Flower sees no workers: no monitoring channel is configured" in response.content.decode()
    )


def test_a_monitoring_channel_that_does_not_answer_is_said_so_and_the_page_still_works(
    ops_client: Client, settings: Any
) -> None:
    # The page named the channel as if all were well while Flower saw no worker.
    settings.CELERY_MONITOR_URL = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens
    response = ops_client.get(URL)
    assert response.status_code == 200
    note = re.search(r'<strong id="ops-monitoring-unreachable">([^<]*)</strong>', response.text)
    assert note is not None and note.group(1).startswith(
        "It is unreachable from this web server (OperationalError): Flower sees no workers"
    )

    monitoring_health.reset()
    settings.CELERY_MONITOR_URL = "redis://127.0.0.1:6379/15"  # the machine's Redis
    assert 'id="ops-monitoring-unreachable"' not in ops_client.get(URL).text


@override_settings(CELERY_MONITOR_URL="redis://:hunter2@cache.internal:6379/3")
def test_page_names_the_channel_without_its_password(ops_client: Client) -> None:
    html = ops_client.get(URL).content.decode()
    assert "cache.internal:6379/3" in html
    assert "hunter2" not in html


def test_page_queries_stay_few_however_many_jobs(
    ops_client: Client, django_assert_max_num_queries: pytest.FixtureDef
) -> None:
    for n in range(30):
        result(
            "SUCCESS" if n % 3 else "FAILURE", created_ago=timedelta(hours=n % 20), name=f"t{n % 7}"
        )
    # 12 for the page before the Jobs dashboard, then: pauses, queue latency, run-time
    # percentiles for the hour and the day, orphaned jobs counted and listed.
    with django_assert_max_num_queries(18):  # type: ignore[operator]
        assert ops_client.get(URL).status_code == 200


@pytest.mark.parametrize(
    ("staff", "permitted", "expected"),
    [(False, False, 403), (True, False, 403), (False, True, 403), (True, True, 200)],
)
def test_page_is_for_staff_with_the_permission_only(
    staff: bool, permitted: bool, expected: int
) -> None:
    user = get_user_model().objects.create_user("someone", is_staff=staff)
    if permitted:
        user.user_permissions.add(Permission.objects.get(codename="view_operations"))
    client = Client()
    client.force_login(user)
    assert client.get(URL).status_code == expected


def test_a_visitor_not_logged_in_is_sent_to_the_login_and_back() -> None:
    response = Client().get(URL)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={URL}"


def test_queue_depth_schedule_is_installed_by_migration() -> None:
    task = PeriodicTask.objects.get(name="Record SQS queue depths")
    assert task.task == "workers.tasks.queue_depths_record"
    assert task.interval is not None and task.interval.every == 60
    assert task.enabled


def test_admin_lists_link_to_the_operations_page() -> None:
    admin_user = get_user_model().objects.create_superuser("root", password="x")
    client = Client()
    client.force_login(admin_user)
    for page in (
        "/admin/workers/queuedepth/",
        "/admin/workers/workerheartbeat/",
        "/admin/django_celery_results/taskresult/",
    ):
        assert f'href="{URL}"' in client.get(page).content.decode(), page


def test_the_page_says_when_sqs_is_unreachable_and_not_when_it_answers(
    ops_client: Client, sqs_queues: AwsEndpoint
) -> None:
    """The page's figures come from the database and only go stale while SQS is away (the
    sampler is a job too); a banner says why."""
    from tests.support.broker import publishing_to

    nobody_listens = f"http://127.0.0.1:{free_port()}"
    with publishing_to(os.environ["SQS_QUEUE_PREFIX"], endpoint_url=nobody_listens):
        html = ops_client.get(URL).content.decode()
    assert 'id="ops-sqs-unreachable"' in html
    assert "SQS is unreachable from this web server (EndpointConnectionError)" in html

    with publishing_to(os.environ["SQS_QUEUE_PREFIX"]):
        assert 'id="ops-sqs-unreachable"' not in ops_client.get(URL).content.decode()


def superuser_beside_a_silent_worker_and_its_waiting_job(queue: str) -> Client:
    """The only worker reads `queue` and has received nothing for ten minutes; a job waits
    there. Returns a client logged in as a superuser."""
    from tests.workers.jobs import job_row

    now = timezone.now()
    WorkerHeartbeat.objects.all().delete()  # held by this test's transaction: none but below
    WorkerHeartbeat.objects.create(
        hostname="silent@host",
        pid=1,
        queues=[queue],
        concurrency=1,
        started_at=now - timedelta(hours=1),
        last_seen_at=now,
        last_receive_at=now - timedelta(minutes=10),
    )
    job_row("app.tasks.work", "PENDING", queue=queue)
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password="x"))
    return client


def test_a_missing_sqs_queue_is_said_with_the_way_out_on_the_jobs_home_and_operations_page(
    ops_client: Client, sqs_queues: AwsEndpoint
) -> None:
    """A queue deleted, or an endpoint restarted empty: the web's relay meets SQS's
    NonExistentQueue sending a job. SQS answers, so the banners said the wrong thing
    ("SQS is unreachable from this web server (AWS.SimpleQueueService.NonExistentQueue)
    ... until it is back"): nothing comes back by waiting; the queues are made again."""
    from workers.outbox import broker_health

    client = superuser_beside_a_silent_worker_and_its_waiting_job("media")
    missing = "AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist."
    with publishing_to(os.environ["SQS_QUEUE_PREFIX"]):
        broker_health.fail(missing)
        try:
            home = client.get("/admin/").content.decode()
            operations = ops_client.get(URL).content.decode()
        finally:
            broker_health.reset()
    for html in (home, operations):
        assert "SQS is unreachable" not in html
        assert "NonExistentQueue" not in html
        assert "A job queue&#x27;s SQS queue does not exist" in html
        assert "manage.py sqs_queues" in html


def test_the_worker_heartbeat_list_names_queues_as_words_not_json() -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        hostname="main@web1",
        pid=1,
        queues=["default", "media", "release"],
        concurrency=2,
        started_at=now,
        last_seen_at=now,
    )
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", password="x"))
    html = client.get("/admin/workers/workerheartbeat/").content.decode()
    assert '<td class="field-queue_names">default, media, release</td>' in html
    assert "[&quot;default&quot;" not in html


def test_run_times_are_written_as_the_job_list_writes_them(ops_client: Client) -> None:
    # A 40 ms job read "0.0 s" here and "< 0.1 s" on the job list; two minutes read "125.0 s".
    result("SUCCESS", created_ago=timedelta(minutes=5), seconds=0.04, name="app.tasks.quick")
    result("SUCCESS", created_ago=timedelta(minutes=5), seconds=125, name="app.tasks.long")

    html = ops_client.get(URL).content.decode()

    assert cell(html, 'data-task="app.tasks.quick" data-period="hour"', "p50") == "&lt; 0.1 s"
    assert cell(html, 'data-task="app.tasks.long" data-period="hour"', "max") == "2 min 05 s"
    slowest = html[html.index('id="slowest"') :]
    assert "0.0 s" not in slowest and "2 min 05 s" in slowest


def test_jobs_by_state_name_each_state_as_the_job_list_does(ops_client: Client) -> None:
    # The table read bare Celery codes (PENDING, RECEIVED) where every other page says
    # "Queued (PENDING)".
    html = ops_client.get(URL).content.decode()

    assert cell(html, 'data-state="PENDING"', "state") == "Queued (PENDING)"
    assert cell(html, 'data-state="FAILURE"', "state") == "Failed (FAILURE)"


@override_settings(WORKER_CONSUMER_STALLED_SECONDS=60)
def test_queues_with_waiting_jobs_and_no_consuming_worker_are_named_with_their_last_receive() -> (
    None
):
    from tests.workers.jobs import job_row
    from workers.models import QueuePause
    from workers.operations import IdleQueue, idle_queues_with_waiting_jobs

    # An hour ahead: the rows below are the only heartbeats of that moment (a worker of the
    # test session, beating now, is long gone by then).
    now = timezone.now() + timedelta(hours=1)
    last_receive = now - timedelta(minutes=5)
    for hostname, queues, last_seen_at, receive in (
        # default: its only worker beats on, its consumer silent for 5 minutes (stalled)
        ("stalled@host", ["default"], now, last_receive),
        # media: consumed; infra: its worker offline; release: no worker at all
        ("media@host", ["media"], now, now - timedelta(seconds=5)),
        ("gone@host", ["infra"], now - timedelta(minutes=10), last_receive),
    ):
        WorkerHeartbeat.objects.create(
            hostname=hostname,
            pid=1,
            queues=queues,
            concurrency=1,
            started_at=now - timedelta(hours=1),
            last_seen_at=last_seen_at,
            last_receive_at=receive,
        )
    for queue in ("default", "media", "infra"):
        job_row("app.tasks.work", "PENDING", queue=queue)
    assert idle_queues_with_waiting_jobs(now=now) == [
        IdleQueue("default", last_receive),
        IdleQueue("infra", last_receive),
    ]  # release: no worker, but nothing waits on it; media: consumed

    # A paused queue's jobs wait for the resume, which its pages say: not for a worker.
    QueuePause.objects.create(queue="infra", paused_by_label="ops")
    job_row("app.tasks.work", "PENDING", queue="release")
    assert idle_queues_with_waiting_jobs(now=now) == [
        IdleQueue("default", last_receive),
        IdleQueue("release", None),
    ]


def test_a_job_due_later_on_a_queue_no_worker_reads_is_told_now_not_once_due() -> None:
    """Its page read only "not before …" until its time came, and then "no worker"."""
    from tests.workers.jobs import job_row
    from workers.models import Job
    from workers.selectors import job_summary_get

    now = timezone.now() + timedelta(hours=1)  # no worker of the session counts by then
    row = job_row("app.tasks.work", "PENDING", queue="media")
    Job.objects.filter(task_id=row.task_id).update(
        sent_at=timezone.now(), run_after=now + timedelta(hours=2)
    )
    summary = job_summary_get(task_id=row.task_id, now=now)
    assert summary is not None and summary.no_consumer


def test_a_waiting_jobs_page_links_the_operations_page_only_for_who_may_open_it() -> None:
    from django.template.loader import render_to_string

    from tests.workers.jobs import job_row
    from workers.admin_links import operations_url_for
    from workers.models import Job
    from workers.selectors import job_summary_get

    row = job_row("app.tasks.work", "PENDING", queue="media")
    Job.objects.filter(task_id=row.task_id).update(sent_at=timezone.now())
    # An hour ahead, no worker of the test session counts as consuming: media has none.
    summary = job_summary_get(task_id=row.task_id, now=timezone.now() + timedelta(hours=1))
    assert summary is not None and summary.no_consumer
    assert summary.no_consumer_last_seen is None
    looker = get_user_model().objects.create_user("looker", is_staff=True)
    operator = get_user_model().objects.create_user("operator", is_staff=True)
    operator.user_permissions.add(Permission.objects.get(codename="view_operations"))
    for user, linked in ((looker, False), (operator, True)):
        user = get_user_model().objects.get(pk=user.pk)  # permissions are cached per object
        html = render_to_string(
            "workers/job_summary.html", {"s": summary, "ops_url": operations_url_for(user)}
        )
        assert "No worker is taking jobs from the media queue now (none seen in the last" in html
        assert ('href="/ops/operations/"' in html) is linked


def test_the_jobs_home_names_sqs_not_the_workers_while_sqs_is_unreachable(
    sqs_queues: AwsEndpoint,
) -> None:
    """In an SQS outage the consumers go silent too, so the waiting jobs' note blamed the
    workers ("no worker takes them") while the cause was SQS; the operations page alone
    said so."""
    from botocore.exceptions import EndpointConnectionError

    from workers.outbox import broker_health

    client = superuser_beside_a_silent_worker_and_its_waiting_job("default")

    with publishing_to(os.environ["SQS_QUEUE_PREFIX"]):
        broker_health.fail(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
        try:
            html = client.get("/admin/").content.decode()
        finally:
            broker_health.reset()
        assert 'id="jobs-sqs-unreachable"' in html
        assert "SQS is unreachable from this web server (EndpointConnectionError)" in html
        assert 'id="idle-queues"' not in html

        html = client.get("/admin/").content.decode()  # SQS answers: the workers it is
        assert 'id="jobs-sqs-unreachable"' not in html
        assert 'id="idle-queues"' in html
