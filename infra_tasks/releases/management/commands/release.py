"""`manage.py release --version <id> [--wait [--timeout N]]`: the deploy pipeline's migrate.

Queues the release's migration job on the `release` queue (the one place that migrates),
and with --wait streams its log here and exits with its result: 0 succeeded (or had already
succeeded), 1 failed or refused, 3 still running when --timeout ran out (the job goes on).

--run-here runs the same release in this process under the same lock, recorded the same way;
it exists for bootstrapping a database whose record tables do not exist yet (`make run` uses
it on every start), see `release_run_here`.
"""

from __future__ import annotations

import time
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_celery_results.models import TaskResult

from infra_tasks.releases.models import Release, ReleaseState
from infra_tasks.releases.services import StartStatus, release_run_here, release_start
from workers.enqueue import BrokerUnavailable, Requester
from workers.errors import ApplicationError
from workers.selectors import job_log_since

TIMED_OUT = 3
POLL_SECONDS = 0.5


class Command(BaseCommand):
    help = "Run a release's pending migrations as a job on the release queue (once per version)."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        # Our --version names the release; it replaces Django's --version (its own version).
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--version", dest="release_version", required=True, help="the release, e.g. a git sha"
        )
        parser.add_argument(
            "--wait", action="store_true", help="stream the job's log and exit with its result"
        )
        parser.add_argument(
            "--timeout", type=float, default=None, help="with --wait: give up after N seconds"
        )
        parser.add_argument(
            "--allow-unsafe",
            action="store_true",
            help="apply backward-incompatible migrations in this release (recorded)",
        )
        parser.add_argument(
            "--run-here",
            action="store_true",
            help="migrate in this process instead of a worker (bootstrap; same lock and record)",
        )

    def handle(
        self,
        *args: Any,
        release_version: str,
        wait: bool,
        timeout: float | None,
        allow_unsafe: bool,
        run_here: bool,
        **options: Any,
    ) -> None:
        if timeout is not None and not wait:
            raise CommandError("--timeout only applies with --wait")
        try:
            if run_here:
                self._run_here(release_version, allow_unsafe=allow_unsafe)
            else:
                self._queue(release_version, allow_unsafe=allow_unsafe, wait=wait, timeout=timeout)
        except ApplicationError as exc:  # refused, or the migration lock stayed taken
            raise CommandError(f"release {release_version}: {exc}") from exc

    def _queue(
        self, version: str, *, allow_unsafe: bool, wait: bool, timeout: float | None
    ) -> None:
        try:
            started = release_start(
                version=version,
                requester=Requester.cli("manage.py release"),
                allow_unsafe=allow_unsafe,
            )
        except BrokerUnavailable as exc:
            raise CommandError(str(exc)) from exc
        release = started.release
        if started.status == StartStatus.ALREADY_SUCCEEDED:
            self._say_already_succeeded(release)
            return
        if started.status == StartStatus.IN_PROGRESS:
            self.stdout.write(
                f"release {version} is already {release.state} as job {release.task_id}"
                + ("; following it" if wait else "")
            )
        else:
            again = " again" if started.status == StartStatus.RETRIED else ""
            self.stdout.write(
                f"release {version}: queued{again} as job {release.task_id} on the release queue"
            )
        if not wait:
            self.stdout.write(f"follow it with: manage.py release --version {version} --wait")
            return
        self._follow(release, timeout=timeout)

    def _follow(self, release: Release, *, timeout: float | None) -> None:
        task_id = release.task_id
        deadline = None if timeout is None else time.monotonic() + timeout
        since = 0
        while True:
            # State first, log second: the log is complete before the state turns final.
            release.refresh_from_db()
            since = self._drain(task_id, since)
            if release.task_id != task_id:
                # It failed and someone asked for it again meanwhile: follow the new attempt.
                task_id, since = release.task_id, 0
                self.stdout.write(f"release {release.version}: started again as job {task_id}")
                continue
            if release.finished:
                break
            status = TaskResult.objects.filter(task_id=task_id).values_list("status", flat=True)
            if status.first() in ("FAILURE", "REVOKED"):
                release.refresh_from_db()
                if not release.finished:
                    raise CommandError(
                        f"release {release.version}: job {task_id} ended {status.first()} "
                        f"without recording an outcome; see /ops/jobs/{task_id}/"
                    )
                continue
            if deadline is not None and time.monotonic() > deadline:
                raise CommandError(
                    f"gave up waiting after {timeout:g}s: release {release.version} is still "
                    f"{release.state} (job {task_id}); it goes on without us",
                    returncode=TIMED_OUT,
                )
            time.sleep(POLL_SECONDS)
        if release.state != ReleaseState.SUCCEEDED:
            raise CommandError(f"release {release.version} failed: {release.error}")
        self.stdout.write(
            self.style.SUCCESS(f"release {release.version} succeeded: {release.summary}")
        )

    def _drain(self, task_id: str, since: int) -> int:
        while True:
            piece = job_log_since(task_id=task_id, since=since)
            for line in piece.lines:
                self.stdout.write(line)
            if piece.next_line == since:
                return since
            since = piece.next_line

    def _run_here(self, version: str, *, allow_unsafe: bool) -> None:
        def echo(text: str) -> None:
            self.stdout.write(text, ending="")
            self.stdout.flush()

        result = release_run_here(
            version=version,
            requester=Requester.cli("manage.py release --run-here"),
            allow_unsafe=allow_unsafe,
            echo=echo,
        )
        if result.status == StartStatus.ALREADY_SUCCEEDED:
            assert result.release is not None
            self._say_already_succeeded(result.release)
            return
        assert result.outcome is not None
        if not result.outcome.succeeded:
            unrecorded = "" if result.release else " (before its record could be written)"
            raise CommandError(f"release {version} failed{unrecorded}: {result.outcome.error}")
        self.stdout.write(
            self.style.SUCCESS(f"release {version} succeeded: {result.outcome.summary}")
        )

    def _say_already_succeeded(self, release: Release) -> None:
        finished = release.finished_at.isoformat(timespec="seconds") if release.finished_at else "?"
        self.stdout.write(
            f"release {release.version} already succeeded at {finished} "
            f"({release.summary}): nothing to do"
        )
