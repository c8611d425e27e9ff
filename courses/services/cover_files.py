"""The stored files of covers: content-addressed, shared by identical covers, deleted only
when nothing references them.

Storing, referencing and deleting one file name are serialised by a transaction-scoped lock
on that name (`file_name_lock`), so a file another course has just started to use is never
deleted under it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from courses.models import Course, CoverVariant, RetiredFile

logger = logging.getLogger(__name__)

RETIRED_BATCH = 500


def files_retire(*, names: Iterable[str]) -> None:
    """Delete these files once MEDIA_RETIRED_FILE_GRACE_SECONDS have passed, if nothing
    references them then: a page drawn a moment ago, or a client that read the API, may
    still load them (deleted at once, they answered 404 until the page redrew)."""
    now = timezone.now()
    RetiredFile.objects.bulk_create(
        [RetiredFile(name=name, retired_at=now) for name in sorted(set(names)) if name],
        update_conflicts=True,
        unique_fields=["name"],
        update_fields=["retired_at"],
    )


def retired_files_delete(*, now: datetime | None = None) -> int:
    """Delete the retired files whose grace period is over and that nothing references
    again; returns how many were deleted. Safe to run twice, or beside itself."""
    now = now or timezone.now()
    due = now - timedelta(seconds=settings.MEDIA_RETIRED_FILE_GRACE_SECONDS)
    deleted = 0
    while batch := list(
        RetiredFile.objects.filter(retired_at__lte=due)
        .order_by("retired_at")
        .values_list("pk", "name")[:RETIRED_BATCH]
    ):
        deleted += len(files_delete_unreferenced(names=[name for _, name in batch]))
        RetiredFile.objects.filter(pk__in=[pk for pk, _ in batch], retired_at__lte=due).delete()
    return deleted


def files_delete_unreferenced(*, names: Iterable[str]) -> list[str]:
    """Delete the stored files among `names` that no course or variant references now."""
    deleted = []
    for name in sorted({name for name in names if name}):
        with transaction.atomic():
            # Waits for a transaction that is storing this same file for another course,
            # then sees that course's reference and keeps the file.
            file_name_lock(name)
            if (
                Course.objects.filter(Q(cover=name) | Q(cover_previous=name)).exists()
                or CoverVariant.objects.filter(file=name).exists()
            ):
                continue
            default_storage.delete(name)
            deleted.append(name)
    return deleted


def file_name_lock(name: str) -> None:
    """Serialise storing, referencing and deleting one shared, content-addressed file.

    Held until the surrounding transaction ends. PostgreSQL only; SQLite already runs one
    writing transaction at a time (IMMEDIATE mode).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [name])


def course_file_names(course: Course) -> set[str]:
    """Every stored file the course references: its originals and its variants."""
    names = set(course.cover_variants.values_list("file", flat=True))
    if course.cover:
        names.add(course.cover.name)
    if course.cover_previous:
        names.add(course.cover_previous)
    return names


def file_store(name: str, content: File) -> bool:
    """Store `content` under `name` unless that content-addressed name already holds it.

    Callers hold the name's lock (`file_name_lock`), so no one else stores it meanwhile.
    """
    if default_storage.exists(name):
        if default_storage.size(name) == content.size:
            return False
        # The name stands for these bytes, so another size is a write cut short: local files
        # are written in place, and a process killed mid-write (a worker, or a web process
        # storing an upload) leaves the first part under the final name. Kept, it would be
        # served, and counted as stored by every later build. (An S3 object appears whole
        # or not at all.)
        logger.warning(
            "%s holds %d bytes, not %d: a write cut short; storing it again",
            name,
            default_storage.size(name),
            content.size,
        )
        default_storage.delete(name)
    default_storage.save(name, content)
    return True
