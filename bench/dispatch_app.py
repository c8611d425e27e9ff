"""The WSGI app `bench/dispatch.py` runs under gunicorn: the project, plus two views that
stand beside opsqueue's diagnostic trigger (/ops/jobs/diagnostic/) for comparison.

- /bench/insert-only/: the same checks, row, message and redirect, and no job at all;
- /bench/plain-celery/: what one would write without opsqueue: the row, then Celery's own
  `delay_on_commit`, which publishes to SQS inside the request and records nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()

from django.contrib import messages  # noqa: E402
from django.db import transaction  # noqa: E402
from django.shortcuts import redirect  # noqa: E402
from django.urls import clear_url_caches, path  # noqa: E402
from django.views.decorators.http import require_POST  # noqa: E402

import project.urls  # noqa: E402
from workers.models import DiagnosticRun  # noqa: E402
from workers.permissions import staff_permission_required  # noqa: E402
from workers.tasks import diagnostic_run_execute  # noqa: E402


@require_POST
@staff_permission_required("workers.run_diagnostic")
def insert_only(request: Any) -> Any:
    with transaction.atomic():
        run = DiagnosticRun.objects.create()
    messages.success(request, f"Diagnostic run {run.pk} saved.")
    return redirect("admin:django_celery_results_taskresult_changelist")


@require_POST
@staff_permission_required("workers.run_diagnostic")
def plain_celery(request: Any) -> Any:
    with transaction.atomic():
        run = DiagnosticRun.objects.create()
        diagnostic_run_execute.delay_on_commit(run.pk)
    messages.success(request, f"Diagnostic run {run.pk} queued.")
    return redirect("admin:django_celery_results_taskresult_changelist")


project.urls.urlpatterns += [
    path("bench/insert-only/", insert_only),
    path("bench/plain-celery/", plain_celery),
]
clear_url_caches()
