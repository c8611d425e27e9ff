"""Cover variants are built by a media worker that shares no disk with the web process: with
media on S3 (as the deployed stack has it, AWS_STORAGE_BUCKET_NAME), the original is read
from the bucket and the variants written there; the worker's own MEDIA_ROOT stays empty."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from courses.models import Course
from courses.services import course_cover_set
from media_pipeline.specs import COVER_SPECS
from tests.courses.conftest import make_course, upload
from tests.courses.test_storage_s3 import storage_from_settings
from tests.support.broker import publishing_to
from tests.support.servers import AwsEndpoint, WorkerProcess, new_queue_prefix, wait_until
from workers.enqueue import Requester

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_media_worker_with_its_own_empty_disk_builds_the_variants_from_s3(
    aws: AwsEndpoint,
    worker_env: dict[str, str],
    run_dir: Path,
    tmp_path: Path,
    cover_jpeg: bytes,
) -> None:
    bucket = f"media-{uuid.uuid4().hex[:8]}"
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=bucket)
    storage = storage_from_settings(bucket)
    prefix = new_queue_prefix()
    worker_disk = tmp_path / "worker-media"
    worker_disk.mkdir()
    worker = WorkerProcess(
        env={
            **worker_env,
            "SQS_QUEUE_PREFIX": prefix,
            "AWS_STORAGE_BUCKET_NAME": bucket,
            "DJANGO_MEDIA_ROOT": str(worker_disk),
        },
        queues=["media"],
        log_dir=run_dir,
        name=f"media-{prefix[1:-1]}",
    )
    try:
        web_disk = tmp_path / "web-media"
        with (
            override_settings(
                STORAGES={**settings.STORAGES, "default": storage}, MEDIA_ROOT=str(web_disk)
            ),
            publishing_to(prefix),
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
    finally:
        worker.stop()

    keys = {obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"media/{course.cover.name}" in keys and len(keys) == 1 + len(COVER_SPECS)
    assert not any(worker_disk.rglob("*")), "nothing of the cover on the worker's disk"
    assert not (tmp_path / "web-media").exists(), "nor on the web process's"
