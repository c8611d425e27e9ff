"""Requests/s of an admin-style view that enqueues a job, against the same view that only
inserts its row. Target: ratio >= 0.8.

Both views run the full middleware stack (session, CSRF, auth, messages) through Django's
test client, as a logged-in staff user, against PostgreSQL; the enqueueing one also records
the job (PENDING TaskResult + Job) and publishes to SQS on a local moto_server.

    .venv/bin/python bench/dispatch.py [requests]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _setup import ROOT, django_on_postgres, table

sys.path.insert(0, str(ROOT))
from tests.support.servers import AwsEndpoint, aws_environment


def insert_only_view(request: Any) -> Any:
    """The trigger view's twin without the enqueue: same checks, same row, same reply."""
    from django.contrib import messages
    from django.shortcuts import redirect

    from workers.models import DiagnosticRun
    from workers.permissions import staff_permission_required

    @staff_permission_required("workers.run_diagnostic")
    def view(request: Any) -> Any:
        run = DiagnosticRun.objects.create()
        messages.success(request, f"Diagnostic run {run.pk} saved.")
        return redirect("admin:django_celery_results_taskresult_changelist")

    return view(request)


def measure(client: Any, url: str, count: int) -> tuple[float, float]:
    """Requests/s by wall clock, and by this process's CPU time (every thread, the relay
    included): the second is what a web worker can serve when SQS is not on its machine."""
    from workers.outbox import relay

    for _ in range(20):  # warm-up: connections, caches, queue URL lookup
        client.post(url)
    relay.drain(timeout=60)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        response = client.post(url)
        assert response.status_code == 302, response.status_code
    assert relay.drain(timeout=120), "the relay did not catch up"
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    endpoint = AwsEndpoint(Path(tempfile.mkdtemp(prefix="bench-dispatch-")))
    try:
        os.environ.update(aws_environment(endpoint.url, "bench-"))
        django_on_postgres()
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.test import Client
        from django.urls import clear_url_caches, path

        import project.urls

        project.urls.urlpatterns.append(path("bench/insert-only/", insert_only_view))
        clear_url_caches()
        settings.ALLOWED_HOSTS = ["testserver"]
        call_command("sqs_queues", stdout=open(os.devnull, "w"))  # noqa: SIM115
        user, _ = get_user_model().objects.get_or_create(username="bench-staff")
        user.is_staff = user.is_superuser = True
        user.save()
        client = Client()
        client.force_login(user)

        insert_wall, insert_cpu = measure(client, "/bench/insert-only/", count)
        enqueue_wall, enqueue_cpu = measure(client, "/ops/jobs/diagnostic/", count)
        rows: list[list[object]] = [
            ["insert only", count, f"{insert_wall:,.0f}", f"{insert_cpu:,.0f}"],
            ["insert + enqueue (SQS)", count, f"{enqueue_wall:,.0f}", f"{enqueue_cpu:,.0f}"],
            [
                "ratio enqueue/insert",
                "",
                f"{enqueue_wall / insert_wall:.2f}",
                f"{enqueue_cpu / insert_cpu:.2f}",
            ],
        ]
        print(table(["view", "requests", "req/s (wall)", "req/s (web CPU)"], rows))
        print(
            "\ntarget: ratio >= 0.8. Wall-clock figures include the local SQS server "
            "(moto_server) competing for this machine's cores; every enqueued job was "
            "published before the clock stopped."
        )
    finally:
        endpoint.stop()


if __name__ == "__main__":
    main()
