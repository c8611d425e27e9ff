"""Jobs started by a schedule are recorded like any other: PENDING, requester = schedule."""

from __future__ import annotations

import json
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask, SolarSchedule
from django_celery_beat.schedulers import ModelEntry
from django_celery_results.models import TaskResult

from tests.support.jobs import job_status
from tests.support.servers import (
    AwsEndpoint,
    BeatProcess,
    WorkerProcess,
    new_queue_prefix,
    own_queues_create,
    wait_until,
)
from tests.workers.test_monitoring import sqs_queues_named
from tests.workers.test_recurring import a_solar_noon_on_the_prime_meridian
from workers.beat import RecordingDatabaseScheduler
from workers.celery import app
from workers.models import DiagnosticRun, Job, RequesterKind
from workers.recurring import recurring_tasks
from workers.selectors import job_summary_get

pytestmark = pytest.mark.django_db(transaction=True)


def outbox_sweep_every_two_seconds() -> IntervalSchedule:
    """A schedule "sweep the outbox" firing every two seconds (beat's proof of life in these
    tests); returns an hourly interval for the schedule a test watches."""
    every_two_seconds, _ = IntervalSchedule.objects.get_or_create(
        every=2, period=IntervalSchedule.SECONDS
    )
    PeriodicTask.objects.create(
        name="sweep the outbox",
        task="workers.tasks.job_republish_unsent",
        interval=every_two_seconds,
    )
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.HOURS)
    return hourly


def test_scheduled_job_is_recorded_with_the_schedule_as_requester_and_runs(
    worker: WorkerProcess,
) -> None:
    run = DiagnosticRun.objects.create(lines=3, duration_seconds=0.1)
    every_hour, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.HOURS)
    periodic = PeriodicTask.objects.create(
        name="hourly diagnostic",
        task="workers.tasks.diagnostic_run_execute",
        interval=every_hour,
        args=json.dumps([run.pk]),
    )
    scheduler = RecordingDatabaseScheduler(app=app)
    try:
        result = scheduler.apply_async(ModelEntry(periodic, app=app))
    finally:
        scheduler.close()

    job = Job.objects.get(task_id=result.id)
    assert (job.requester_kind, job.requester_label) == (
        RequesterKind.SCHEDULE,
        "hourly diagnostic",
    )
    assert TaskResult.objects.get(task_id=result.id).periodic_task_name == "hourly diagnostic"
    wait_until(
        lambda: TaskResult.objects.filter(task_id=result.id, status="SUCCESS").exists(),
        timeout=30,
        message="the scheduled job to succeed",
    )
    assert DiagnosticRun.objects.get(pk=run.pk).state == DiagnosticRun.State.SUCCEEDED


@pytest.mark.django_db(serialized_rollback=True)
def test_job_cleanup_is_scheduled_out_of_the_box() -> None:
    task = PeriodicTask.objects.get(task="workers.tasks.job_records_cleanup")
    assert task.enabled and task.crontab is not None


def test_a_beat_killed_right_after_sending_does_not_send_that_occurrence_again(
    worker_env: dict[str, str], run_dir: Path
) -> None:
    """Beat saves an entry's last run as it sends it. django-celery-beat alone writes it
    every three minutes, and a beat killed in between sent the same occurrence again."""
    prefix = new_queue_prefix()
    sqs_queues_named(prefix)
    env = {**worker_env, "SQS_QUEUE_PREFIX": prefix}
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.HOURS)
    witness, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    # The frequent entry is due at once, the hourly one four seconds later: beat saves
    # everything at its first send anyway, so the hourly send must not be the first.
    for name, schedule, due_in in (
        ("every two seconds", witness, 0),
        ("hourly cleanup", hourly, 4),
    ):
        PeriodicTask.objects.create(
            name=name,
            task="workers.tasks.queue_depths_record",
            interval=schedule,
            last_run_at=timezone.now() - timedelta(hours=1, seconds=-due_in),
        )

    def sent(name: str) -> int:
        return Job.objects.filter(requester_label=name).count()

    def saved_run(name: str) -> bool:
        last = PeriodicTask.objects.get(name=name).last_run_at
        return last is not None and last > timezone.now() - timedelta(minutes=5)

    beat = BeatProcess(env=env, log_dir=run_dir)
    try:
        wait_until(lambda: sent("hourly cleanup") == 1, timeout=30, message="the first send")
        # Saved right after the send (a kill in those milliseconds can still repeat it).
        wait_until(lambda: saved_run("hourly cleanup"), timeout=10, message="the run saved")
    finally:
        os.killpg(beat.process.pid, signal.SIGKILL)  # no shutdown, no last sync
        beat.process.wait(timeout=10)
    witnessed = sent("every two seconds")

    again = BeatProcess(env=env, log_dir=run_dir)
    try:
        # The new beat is scheduling: it sends the frequent entry twice more.
        wait_until(
            lambda: sent("every two seconds") >= witnessed + 2,
            timeout=30,
            message="the restarted beat to send the frequent entry",
        )
        assert sent("hourly cleanup") == 1, "the hourly occurrence was sent again"
    finally:
        again.stop()


def beat_beside_a_bad_schedule(
    worker_env: dict[str, str], run_dir: Path, name: str, **bad: str
) -> str:
    """Run beat with a schedule `name` saved with the `bad` fields, beside a good one firing
    every second, until the good one has fired twice. Beat must still run, the bad row be
    disabled, and nothing be queued for it. Returns beat's log."""
    prefix = new_queue_prefix()
    sqs_queues_named(prefix)
    every_second, _ = IntervalSchedule.objects.get_or_create(
        every=1, period=IntervalSchedule.SECONDS
    )
    task = "workers.tasks.queue_depths_record"
    PeriodicTask.objects.create(name=name, task=task, interval=every_second, **bad)
    PeriodicTask.objects.create(name="witness", task=task, interval=every_second)
    beat = BeatProcess(env={**worker_env, "SQS_QUEUE_PREFIX": prefix}, log_dir=run_dir)
    try:
        wait_until(
            lambda: Job.objects.filter(requester_label="witness").count() >= 2,
            timeout=30,
            message="beat to go on sending the good schedule",
        )
        assert beat.process.poll() is None, "beat exited"
    finally:
        beat.stop()
    assert not PeriodicTask.objects.get(name=name).enabled
    assert not Job.objects.filter(requester_label=name).exists()
    return beat.log_text()


def test_a_schedule_whose_headers_are_no_json_object_is_disabled_and_beat_keeps_sending(
    worker_env: dict[str, str], run_dir: Path
) -> None:
    """Headers saved as `[1]` (the admin took them until it checked them) made beat raise a
    TypeError while it read its schedule, at every start: beat exited, and `make run`
    stopped everything with it. Now that row is disabled and the others still fire."""
    log = beat_beside_a_bad_schedule(worker_env, run_dir, "bad headers", headers="[1]")
    # Beat's log says so, and what it sends: once Django had set up logging in beat (after
    # Celery had pointed stderr at its logger) every later line was dropped, the exit too.
    assert "Disabling schedule bad headers: its headers are not a JSON object ([1])" in log
    assert "Scheduler: Sending due task witness" in log


def test_a_schedule_for_a_queue_no_worker_reads_is_disabled_and_beat_keeps_sending(
    worker_env: dict[str, str], run_dir: Path
) -> None:
    """A schedule saved with queue `bogus` (before the admin checked the name, or from the
    shell) sent every firing there, where no worker reads: each job read Queued (PENDING)
    for good. Now beat disables that row, says why, and the others still fire."""
    log = beat_beside_a_bad_schedule(worker_env, run_dir, "bad queue", queue="bogus")
    assert not Job.objects.exclude(queue__in=["default", "media", "infra", "release"]).exists()
    assert "Disabling schedule bad queue: No worker reads a queue named “bogus”." in log


def test_a_schedule_routed_elsewhere_than_its_queue_is_disabled_and_beat_keeps_sending(
    worker_env: dict[str, str], run_dir: Path
) -> None:
    """A schedule saved with exchange and routing key `bogus` (before the admin checked
    them) sent every firing nowhere: kombu's SQS channel found no queue bound to that key,
    SQS took nothing, and each job read Queued (PENDING) for good. Beat now disables it."""
    log = beat_beside_a_bad_schedule(
        worker_env, run_dir, "bad route", exchange="bogus", routing_key="bogus"
    )
    assert (
        "Disabling schedule bad route: On SQS a job goes to its queue; leave the exchange "
        "empty (or “default”), not “bogus”." in log
    )


@pytest.mark.waits
def test_a_schedule_firing_while_sqs_is_down_is_recorded_once_and_runs_once_sqs_is_back(
    worker_env: dict[str, str], run_dir: Path, endpoint: AwsEndpoint
) -> None:
    """A firing that cannot reach SQS stays recorded, unsent, and says so on its page; the
    outbox sweeper sends it when SQS is back. A frequent schedule's firings through the
    outage leave one waiting job, which its next firing sends; a nightly one's runs late,
    not never (a database's nightly stop would otherwise be lost until the next night)."""
    prefix = new_queue_prefix()
    own_queues_create(endpoint, prefix)
    env = {
        **worker_env,
        "AWS_ENDPOINT_URL": endpoint.url,
        "AWS_ENDPOINT_URL_SQS": endpoint.url,
        "SQS_QUEUE_PREFIX": prefix,
    }
    hourly = outbox_sweep_every_two_seconds()

    def jobs_of(name: str) -> list[Job]:
        return list(Job.objects.filter(requester_label=name).order_by("created_at"))

    worker = WorkerProcess(env=env, queues=["default"], log_dir=run_dir, name="after-outage")
    beat = BeatProcess(env=env, log_dir=run_dir)
    try:
        wait_until(
            lambda: any(job_status(j.task_id) == "SUCCESS" for j in jobs_of("sweep the outbox")),
            message="beat and the worker to run the sweeper while SQS is up",
        )
        endpoint.halt()
        before_outage = {j.task_id for j in jobs_of("sweep the outbox")}
        fired = PeriodicTask.objects.get(name="sweep the outbox").total_run_count
        run = DiagnosticRun.objects.create(lines=2, duration_seconds=0.1)
        PeriodicTask.objects.create(
            name="nightly diagnostic",
            task="workers.tasks.diagnostic_run_execute",
            interval=hourly,
            args=json.dumps([run.pk]),
            last_run_at=timezone.now() - timedelta(hours=1),  # due now
        )
        wait_until(lambda: jobs_of("nightly diagnostic"), message="the nightly firing recorded")
        (nightly,) = jobs_of("nightly diagnostic")
        # Firings beat could not send are saved as served too (a beat restarted in the
        # outage would fire them again, if only to meet the waiting job).
        wait_until(
            lambda: PeriodicTask.objects.get(name="sweep the outbox").total_run_count >= fired + 3,
            message="the sweeper's schedule to fire three times into the outage",
        )
        waiting = [j for j in jobs_of("sweep the outbox") if j.task_id not in before_outage]
        assert len(waiting) == 1, "one waiting job per schedule, not one per firing"
        for job in (nightly, *waiting):
            job.refresh_from_db()
            assert job.sent_at is None
            summary = job_summary_get(task_id=job.task_id)
            assert summary is not None and summary.status == "PENDING" and summary.unsent

        endpoint.start()
        own_queues_create(endpoint, prefix)
        # Sent by the sweeper once it is a minute old (a younger one may be in a live
        # process's relay still): a minute or so after the outage ends.
        wait_until(
            lambda: job_status(nightly.task_id) == "SUCCESS",
            timeout=150,
            message="the nightly firing recorded in the outage to run once SQS is back",
        )
        run.refresh_from_db()
        assert (run.state, run.attempts) == (DiagnosticRun.State.SUCCEEDED, 1)
        assert len(jobs_of("nightly diagnostic")) == 1
        wait_until(
            lambda: job_status(waiting[0].task_id) == "SUCCESS",
            message="the sweeper's waiting job to be sent by its next firing and run",
        )
        summary = job_summary_get(task_id=nightly.task_id)
        assert summary is not None and not summary.unsent
    finally:
        beat.stop()
        worker.stop()


def test_beat_sends_a_solar_schedule_when_its_event_has_passed_and_knows_the_next(
    worker_env: dict[str, str], run_dir: Path
) -> None:
    """The schedules admin offers solar events. Celery computes them with ephem: without it
    the schedule raised ImproperlyConfigured as beat loaded it. Solar noon on the prime
    meridian at the equator is at 12:00 UTC give or take the equation of time (17 minutes),
    so its next occurrence is known without waiting for it."""
    prefix = new_queue_prefix()
    sqs_queues_named(prefix)
    env = {**worker_env, "SQS_QUEUE_PREFIX": prefix}
    noon, _ = SolarSchedule.objects.get_or_create(event="solar_noon", latitude=0, longitude=0)
    witness, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    # Last run two days ago: a solar noon has passed since, so it is due at once.
    PeriodicTask.objects.create(
        name="at solar noon",
        task="workers.tasks.queue_depths_record",
        solar=noon,
        last_run_at=timezone.now() - timedelta(days=2),
    )
    PeriodicTask.objects.create(
        name="every two seconds", task="workers.tasks.queue_depths_record", interval=witness
    )

    def sent(name: str) -> int:
        return Job.objects.filter(requester_label=name).count()

    beat = BeatProcess(env=env, log_dir=run_dir)
    try:
        wait_until(
            lambda: sent("at solar noon") == 1,
            timeout=30,
            message="beat to send the solar schedule",
        )
        # Beat goes on: the passed noon is sent once, the next one waits for its time.
        wait_until(lambda: sent("every two seconds") >= 3, timeout=30, message="beat to go on")
        assert sent("at solar noon") == 1
        assert "Traceback" not in beat.log_text()
    finally:
        beat.stop()

    # The run is saved, and the next solar noon is the one to come.
    assert PeriodicTask.objects.get(name="at solar noon").total_run_count == 1
    (row,) = [r for r in recurring_tasks() if r.name == "at solar noon"]
    a_solar_noon_on_the_prime_meridian(row.next_run_at)


@pytest.mark.waits
def test_a_schedule_firing_while_the_database_is_unreachable_is_recorded_and_runs_once_it_is_back(
    worker_env: dict[str, str], run_dir: Path, prefix: str
) -> None:
    """Celery counts a firing as served before it is sent: one that met an unreachable
    database (a failover, a restart) was logged as a "Message Error" and never fired again,
    so a database's nightly stop or morning start was skipped until the next day, with no
    job to show for it. Beat now waits for the database and records the firing late."""
    from tests.support.database import database_down

    env = {**worker_env, "SQS_QUEUE_PREFIX": prefix}
    hourly = outbox_sweep_every_two_seconds()
    run = DiagnosticRun.objects.create(lines=2, duration_seconds=0.1)
    due_at = timezone.now() + timedelta(seconds=45)
    PeriodicTask.objects.create(
        name="nightly diagnostic",
        task="workers.tasks.diagnostic_run_execute",
        interval=hourly,
        args=json.dumps([run.pk]),
        last_run_at=due_at - timedelta(hours=1),
    )
    worker = WorkerProcess(env=env, queues=["default"], log_dir=run_dir, name="db-outage")
    beat = BeatProcess(env=env, log_dir=run_dir)
    try:
        wait_until(
            lambda: Job.objects.filter(requester_label="sweep the outbox").exists(),
            timeout=40,
            message="beat to have read its schedule and fired",
        )
        assert timezone.now() < due_at - timedelta(seconds=3), "beat started too late"
        with database_down():
            # The nightly firing comes due in the outage, and the outage lasts past it.
            time.sleep((due_at - timezone.now()).total_seconds() + 10)
            assert not Job.objects.filter(requester_label="nightly diagnostic").exists()
        wait_until(
            lambda: Job.objects.filter(requester_label="nightly diagnostic").exists(),
            timeout=30,
            message="the firing made in the outage to be recorded once the database is back",
        )
        (job,) = Job.objects.filter(requester_label="nightly diagnostic")
        wait_until(lambda: job_status(job.task_id) == "SUCCESS", message="the firing to run")
        run.refresh_from_db()
        assert (run.state, run.attempts) == (DiagnosticRun.State.SUCCEEDED, 1)
        assert "waiting for the database to record the firing of" in beat.log_text()
    finally:
        beat.stop()
        worker.stop()
