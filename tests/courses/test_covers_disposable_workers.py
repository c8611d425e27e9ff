"""Cover variants are built by a media worker that shares no disk with the web process: with
media on S3 (as the deployed stack has it, AWS_STORAGE_BUCKET_NAME), the original is read
from the bucket and the variants written there; the worker's own MEDIA_ROOT stays empty."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from courses.models import Course
from courses.services import course_cover_set
from media_pipeline.specs import COVER_SPECS
from tests.courses.conftest import S3MediaWorker, make_course, upload
from tests.support.broker import publishing_to
from tests.support.servers import wait_until
from workers.enqueue import Requester

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_media_worker_with_its_own_empty_disk_builds_the_variants_from_s3(
    s3_media_worker: S3MediaWorker, tmp_path: Path, cover_jpeg: bytes
) -> None:
    media = s3_media_worker
    web_disk = tmp_path / "web-media"
    with (
        override_settings(
            STORAGES={**settings.STORAGES, "default": media.storage}, MEDIA_ROOT=str(web_disk)
        ),
        publishing_to(media.prefix),
    ):
        course = course_cover_set(
            course_id=make_course().pk,
            upload=upload(cover_jpeg),
            requester=Requester.cli("t"),
        )
    wait_until(
        lambda: (
            Course.objects.get(pk=course.pk).cover_status
            in (Course.CoverStatus.READY, Course.CoverStatus.FAILED)
        ),
        timeout=60,
        message="the cover's variants",
    )
    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.READY, course.cover_error

    keys = {obj["Key"] for obj in media.s3.list_objects_v2(Bucket=media.bucket)["Contents"]}
    assert f"media/{course.cover.name}" in keys and len(keys) == 1 + len(COVER_SPECS)
    assert not any(media.disk.rglob("*")), "nothing of the cover on the worker's disk"
    assert not web_disk.exists(), "nor on the web process's"
