"""Serving stored media: type and disposition from the stored name, locally and on S3.

The S3 side runs against the local endpoint in tests/courses/test_storage_s3.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import RequestFactory

from media_pipeline.storage import MediaS3Storage, serve_media


@pytest.mark.parametrize(
    ("name", "content_type", "disposition"),
    [
        ("a/cover.heic", "image/heic", "inline"),
        ("a/cover.webp", "image/webp", "inline"),
        ("a/cover.bin", "application/octet-stream", "attachment"),
    ],
)
def test_local_media_are_served_inline_only_when_they_are_images(
    tmp_path: Path, name: str, content_type: str, disposition: str
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / name).write_bytes(b"<html><script>alert(1)</script></html>")

    response = serve_media(RequestFactory().get(f"/media/{name}"), name, str(tmp_path))

    assert response["Content-Type"] == content_type
    assert response["Content-Disposition"] == disposition


def test_s3_objects_get_the_type_of_their_stored_name_not_the_uploaders() -> None:
    storage = MediaS3Storage(bucket_name="unused", object_parameters={"CacheControl": "private"})
    assert storage.get_object_parameters("covers/x.avif") == {
        "CacheControl": "private",
        "ContentType": "image/avif",
        "ContentDisposition": "inline",
    }
    assert storage.get_object_parameters("covers/x.bin")["ContentDisposition"] == "attachment"
