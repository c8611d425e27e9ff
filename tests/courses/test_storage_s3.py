"""Media on S3 through django-storages, against the real local AWS endpoint (moto_server).

The storage configuration is the one `project/settings.py` builds when
AWS_STORAGE_BUCKET_NAME is set, read from a fresh process, not restated here.
"""

from __future__ import annotations

import io
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from PIL import Image

from courses.services import course_cover_set, course_cover_variants_build
from media_pipeline.specs import COVER_SPECS
from tests.courses.conftest import make_course, storage_from_settings, upload
from tests.media_pipeline.images import photo_file, quadrants
from tests.support.servers import AwsEndpoint
from workers.enqueue import Requester

pytestmark = pytest.mark.django_db


def fetch(url: str) -> tuple[int, bytes]:
    status, _, body = fetch_with_headers(url)
    return status, body


def fetch_with_headers(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            headers = {key.lower(): value for key, value in response.headers.items()}
            return response.status, headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {}, b""


@pytest.fixture
def s3_media(aws: AwsEndpoint, sqs_queues: AwsEndpoint) -> Iterator[tuple[Any, str]]:
    """Media on a fresh bucket of the local endpoint, configured as settings.py does."""
    bucket = f"media-{uuid.uuid4().hex[:8]}"
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=bucket)
    storage = storage_from_settings(bucket)
    with override_settings(STORAGES={**settings.STORAGES, "default": storage}):
        yield s3, bucket


def key_of(url: str, bucket: str) -> str:
    return urlsplit(url).path.split(f"/{bucket}/")[1]


@pytest.mark.parametrize(
    ("data", "uploaded_as", "extension", "content_type", "disposition"),
    [
        (
            b"<html><script>alert(1)</script></html>",
            "page.html",
            "bin",
            "application/octet-stream",
            "attachment",
        ),
        (photo_file("PNG", quadrants(), orientation=1), "photo.html", "png", "image/png", "inline"),
        (
            photo_file("HEIF", quadrants(), orientation=1),
            "IMG_0001.jpg",
            "heic",
            "image/heic",
            "inline",
        ),
    ],
    ids=["html-as-html", "png-as-html", "heic-as-jpg"],
)
def test_the_original_on_s3_is_named_and_typed_from_its_content_not_the_uploader(
    s3_media: tuple[Any, str],
    data: bytes,
    uploaded_as: str,
    extension: str,
    content_type: str,
    disposition: str,
    django_capture_on_commit_callbacks: Any,
) -> None:
    s3, bucket = s3_media
    upload = SimpleUploadedFile(uploaded_as, data, content_type="text/html")
    with django_capture_on_commit_callbacks(execute=True):
        course = course_cover_set(
            course_id=make_course().pk, upload=upload, requester=Requester.cli("t")
        )

    assert (
        course.cover.name
        == f"covers/originals/{course.cover_sha256[:2]}/{course.cover_sha256}.{extension}"
    )
    head = s3.head_object(Bucket=bucket, Key=f"media/{course.cover.name}")
    assert (head["ContentType"], head["ContentDisposition"]) == (content_type, disposition)
    status, headers, body = fetch_with_headers(course.cover.url)
    assert status == 200 and body == data
    assert (headers["content-type"], headers["content-disposition"]) == (content_type, disposition)


def test_covers_on_s3_are_private_and_served_by_short_presigned_urls(
    aws: AwsEndpoint,
    sqs_queues: AwsEndpoint,
    client: Client,
    cover_jpeg: bytes,
    django_capture_on_commit_callbacks: Any,
) -> None:
    bucket = f"media-{uuid.uuid4().hex[:8]}"
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=bucket)
    storage = storage_from_settings(bucket)
    assert storage["BACKEND"] == "media_pipeline.storage.MediaS3Storage"

    with override_settings(STORAGES={**settings.STORAGES, "default": storage}):
        course = make_course()
        with django_capture_on_commit_callbacks(execute=True):
            course = course_cover_set(
                course_id=course.pk, upload=upload(cover_jpeg), requester=Requester.cli("t")
            )
        course_cover_variants_build(
            course_id=course.pk, source_hash=course.cover_sha256, task_id="s3"
        )
        data = client.get(f"/api/courses/{course.slug}/").json()

    keys = {obj["Key"] for obj in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert f"media/{course.cover.name}" in keys and len(keys) == 1 + len(COVER_SPECS)
    for key in keys:
        grants = s3.get_object_acl(Bucket=bucket, Key=key)["Grants"]
        assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]
        assert all(g["Grantee"]["Type"] == "CanonicalUser" for g in grants)

    variants = {v["name"]: v for v in data["cover"]["variants"]}
    webp = variants["w200-webp"]
    head = s3.head_object(Bucket=bucket, Key=key_of(webp["url"], bucket))
    assert (head["ContentType"], head["ContentDisposition"]) == ("image/webp", "inline")

    query = parse_qs(urlsplit(webp["url"]).query)
    assert query["X-Amz-Expires"] == ["120"] and "X-Amz-Signature" in query
    status, body = fetch(webp["url"])
    assert status == 200
    assert Image.open(io.BytesIO(body)).format == "WEBP"
    # The same object without the signature is refused: nothing is public.
    assert fetch(webp["url"].split("?")[0])[0] == 403
