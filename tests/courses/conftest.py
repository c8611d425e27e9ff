"""Fixtures for the catalogue: courses, cover files, an isolated media directory, and a media
worker with media on S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from courses.models import Course
from media_pipeline.samples import jpeg_bytes, photo
from tests.support.servers import AwsEndpoint, WorkerProcess, new_queue_prefix
from workers.devstack import BASE_DIR


@pytest.fixture
def media_root(settings: object, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")  # type: ignore[attr-defined]
    return tmp_path / "media"


@pytest.fixture(scope="session")
def cover_jpeg() -> bytes:
    return jpeg_bytes(photo(1200, 900, seed=1))


@pytest.fixture(scope="session")
def other_jpeg() -> bytes:
    return jpeg_bytes(photo(900, 1200, seed=2))


def storage_from_settings(bucket: str) -> dict[str, Any]:
    """STORAGES["default"] as the deployed settings make it for media in `bucket`."""
    script = (
        "import django, json; django.setup(); from django.conf import settings; "
        "print(json.dumps(settings.STORAGES['default']))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "AWS_STORAGE_BUCKET_NAME": bucket,
        "AWS_QUERYSTRING_EXPIRE": "120",
    }
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=BASE_DIR, capture_output=True, check=True
    )
    return json.loads(out.stdout)


@dataclass(frozen=True)
class S3MediaWorker:
    """A real media worker on queues of its own, with media in a bucket of its own (as the
    deployed stack has it) and a MEDIA_ROOT of its own that nothing should be written to."""

    bucket: str
    s3: Any
    storage: dict[str, Any]  # STORAGES["default"] as the deployed settings make it
    prefix: str
    worker: WorkerProcess
    disk: Path


@pytest.fixture
def s3_media_worker(
    aws: AwsEndpoint, worker_env: dict[str, str], run_dir: Path, tmp_path: Path
) -> Iterator[S3MediaWorker]:
    bucket = f"media-{uuid.uuid4().hex[:8]}"
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=bucket)
    prefix = new_queue_prefix()
    disk = tmp_path / "worker-media"
    disk.mkdir()
    worker = WorkerProcess(
        env={
            **worker_env,
            "SQS_QUEUE_PREFIX": prefix,
            "AWS_STORAGE_BUCKET_NAME": bucket,
            "DJANGO_MEDIA_ROOT": str(disk),
        },
        queues=["media"],
        log_dir=run_dir,
        name=f"media-{prefix[1:-1]}",
    )
    try:
        yield S3MediaWorker(bucket, s3, storage_from_settings(bucket), prefix, worker, disk)
    finally:
        worker.stop()


def make_course(slug: str = "course", *, published: bool = True) -> Course:
    return Course.objects.create(title=slug.title(), slug=slug, is_published=published)


def upload(data: bytes, name: str = "cover.jpg") -> ContentFile:
    return ContentFile(data, name=name)


def stored_files(root: Path) -> set[str]:
    if not root.exists():
        return set()
    return {
        str(Path(dirpath, name).relative_to(root))
        for dirpath, _, names in os.walk(root)
        for name in names
    }


def stored_image(name: str) -> Image.Image:
    with default_storage.open(name, "rb") as handle:
        image = Image.open(handle)
        image.load()
    return image
