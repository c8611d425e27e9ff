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

from _setup import ROOT, django_on_postgres, table

sys.path.insert(0, str(ROOT))
from tests.support.servers import AwsEndpoint, aws_environment  # noqa: E402


def insert_only_view(request):  # type: ignore[no-untyped-def]
    """The trigger view's twin without the enqueue: same checks, same row, same reply."""
    from django.contrib import messages
    from django.shortcuts import redirect

    from workers.models import DiagnosticRun
    from workers.permissions import staff_permission_required

    @staff_permission_required("workers.run_diagnostic")
    def view(request):  # type: ignore[no-untyped-def]
        run = DiagnosticRun.objects.create()
        messages.success(request, f"Diagnostic run {run.pk} saved.")
        return redirect("admin:django_celery_results_taskresult_changelist")

    return view(request)


def requests_per_second(client, url: str, count: int) -> float:  # type: ignore[no-untyped-def]
    for _ in range(20):  # warm-up: connections, caches, queue URL lookup
        client.post(url)
    started = time.perf_counter()
    for _ in range(count):
        response = client.post(url)
        assert response.status_code == 302, response.status_code
    return count / (time.perf_counter() - started)


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

        insert = requests_per_second(client, "/bench/insert-only/", count)
        enqueue = requests_per_second(client, "/ops/jobs/diagnostic/", count)
        rows = [
            ["insert only", count, f"{insert:,.0f}"],
            ["insert + enqueue (SQS)", count, f"{enqueue:,.0f}"],
        ]
        print(table(["view", "requests", "requests/s"], rows))
        print(f"\nratio enqueue/insert: {enqueue / insert:.2f} (target >= 0.8)")
    finally:
        endpoint.stop()


if __name__ == "__main__":
    main()
