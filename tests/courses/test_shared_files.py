"""Identical covers share content-addressed files; deleting one course's files must not pull
a file from under another course that is storing the same file at that very moment."""

from __future__ import annotations

import hashlib
import threading

import psycopg
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection

from courses.models import Course
from courses.services import course_delete
from tests.courses.conftest import make_course
from tests.support.servers import wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("media_root")]


def test_deletion_waits_for_a_concurrent_upload_of_the_same_file_and_then_keeps_it(
    cover_jpeg: bytes,
) -> None:
    sha = hashlib.sha256(cover_jpeg).hexdigest()
    name = f"covers/originals/{sha[:2]}/{sha}.jpg"
    default_storage.save(name, ContentFile(cover_jpeg))
    first = make_course("first")
    Course.objects.filter(pk=first.pk).update(cover=name, cover_sha256=sha, cover_status="ready")
    second = make_course("second")

    db = connection.settings_dict
    url = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    with psycopg.connect(url) as uploader:
        # What course_cover_set does for the second course: lock the name, reference the
        # (already stored) file, and not yet commit.
        uploader.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [name])
        uploader.execute(
            "UPDATE courses_course SET cover = %s, cover_sha256 = %s, cover_status = 'pending' "
            "WHERE id = %s",
            [name, sha, second.pk],
        )

        def delete_first() -> None:
            try:
                course_delete(course_id=first.pk)
            finally:
                connection.close()

        deleter = threading.Thread(target=delete_first)
        deleter.start()
        with psycopg.connect(url, autocommit=True) as observer:
            wait_until(
                lambda: observer.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'advisory'"
                ).fetchone()[0],  # type: ignore[index]
                timeout=30,
                message="the deletion to wait for the uploader's lock",
            )
        assert default_storage.exists(name)
        uploader.commit()
    deleter.join(timeout=30)

    assert not Course.objects.filter(pk=first.pk).exists()
    assert default_storage.exists(name)
