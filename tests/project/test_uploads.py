"""Uploads past MEDIA_MAX_UPLOAD_BYTES are counted, not spooled to the web server's disk."""

from __future__ import annotations

import os
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile
from django.test import RequestFactory


def test_an_upload_past_the_limit_is_counted_at_its_real_size_but_stored_only_to_the_limit(
    settings: Any,
) -> None:
    settings.MEDIA_MAX_UPLOAD_BYTES = 2**20
    data = os.urandom(5 * 2**20)  # past FILE_UPLOAD_MAX_MEMORY_SIZE: spooled to a file
    request = RequestFactory().post("/", {"cover": SimpleUploadedFile("big.jpg", data)})

    upload = request.FILES["cover"]

    assert isinstance(upload, TemporaryUploadedFile)
    assert upload.size == len(data)  # what the form's size check reads
    assert os.path.getsize(upload.temporary_file_path()) == 2**20 + 1
    upload.close()


def test_an_upload_within_the_limit_is_stored_whole(settings: Any) -> None:
    settings.MEDIA_MAX_UPLOAD_BYTES = 8 * 2**20
    data = os.urandom(3 * 2**20)
    request = RequestFactory().post("/", {"cover": SimpleUploadedFile("ok.jpg", data)})

    upload = request.FILES["cover"]

    assert isinstance(upload, TemporaryUploadedFile)
    assert upload.size == len(data) and upload.read() == data
    upload.close()
