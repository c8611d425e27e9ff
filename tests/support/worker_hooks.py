"""Imported by every test worker (`celery worker --include`, tests/support/servers.py).

Between transactional tests the test database is flushed, and Django makes the content
types again under new ids. A worker shared by the session kept the old ones in Django's
ContentType cache, so a job it queued for a person (whose admin LogEntry names the content
type) failed on a foreign key after an earlier test had filled that cache. A production
database keeps its content types; only a flushed test database changes them.
"""

from __future__ import annotations

from typing import Any

from celery.signals import task_prerun
from django.contrib.contenttypes.models import ContentType


@task_prerun.connect
def content_types_forget(**_: Any) -> None:
    ContentType.objects.clear_cache()
