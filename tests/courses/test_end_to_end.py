"""A cover uploaded in the admin becomes variants through a real worker over SQS."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django_celery_results.models import TaskResult
from PIL import Image

from courses.models import Course, CoverVariant
from media_pipeline.formats import sniff
from media_pipeline.samples import jpeg_bytes, photo
from media_pipeline.specs import COVER_SPECS
from tests.courses.conftest import make_course
from tests.media_pipeline.images import assert_no_metadata, photo_file, quadrants
from tests.media_pipeline.test_resize import assert_upright_quadrants
from tests.support.servers import WorkerProcess, wait_until
from workers import job_actions
from workers.models import Job
from workers.selectors import job_log_since

pytestmark = pytest.mark.django_db(transaction=True)


def post_cover(client: Client, course: Course, data: bytes, name: str) -> Any:
    return client.post(
        f"/admin/courses/course/{course.pk}/change/",
        {
            "title": course.title,
            "slug": course.slug,
            "summary": "",
            "is_published": "on",
            "new_cover": SimpleUploadedFile(name, data),
            "sections-TOTAL_FORMS": "0",
            "sections-INITIAL_FORMS": "0",
            "cover_variants-TOTAL_FORMS": "0",
            "cover_variants-INITIAL_FORMS": "0",
        },
    )


def status_of(course: Course) -> str:
    return Course.objects.values_list("cover_status", flat=True).get(pk=course.pk)


def test_upload_returns_before_any_variant_exists_and_the_worker_makes_them(
    worker: WorkerProcess, client: Client
) -> None:
    client.force_login(get_user_model().objects.create_superuser("editor"))
    course = make_course("e2e")

    response = post_cover(client, course, jpeg_bytes(photo(4000, 3000)), "big.jpg")

    assert response.status_code == 302
    assert not CoverVariant.objects.filter(course=course).exists()
    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.PENDING
    assert Job.objects.get(task_id=course.cover_task_id).queue == "media"

    wait_until(lambda: status_of(course) == "ready", timeout=60, message="variants")
    variants = list(CoverVariant.objects.filter(course=course))
    assert {v.spec_name for v in variants} == {spec.name for spec in COVER_SPECS}
    assert all(default_storage.exists(str(v.file.name)) for v in variants)
    result = TaskResult.objects.get(task_id=course.cover_task_id)
    wait_until(lambda: TaskResult.objects.get(pk=result.pk).status == "SUCCESS", timeout=30)
    assert TaskResult.objects.get(pk=result.pk).worker == worker.hostname
    assert job_log_since(task_id=course.cover_task_id).lines[-1] == (
        f"done: {len(COVER_SPECS)} variants of the cover {course.cover_sha256[:12]}, "
        f"{len(COVER_SPECS)} newly stored"
    ), "words, not a Python dict"


def test_a_bad_upload_fails_on_the_worker_with_its_message_on_course_and_job(
    worker: WorkerProcess, client: Client
) -> None:
    client.force_login(get_user_model().objects.create_superuser("editor2"))
    course = make_course("e2e-bad")

    # A JPEG's signature, then no picture: past the form's check, refused by the worker.
    # (A file with no picture's signature at all is refused on the form: test_browser.py.)
    post_cover(client, course, b"\xff\xd8\xff\xe0" + b"this is not a photo\n" * 50, "holiday.jpg")

    wait_until(lambda: status_of(course) == "failed", timeout=60, message="failure")
    course.refresh_from_db()
    assert course.cover_error.startswith("The image data is truncated or corrupt")
    wait_until(
        lambda: TaskResult.objects.get(task_id=course.cover_task_id).status == "FAILURE",
        timeout=30,
        message="the job to end FAILURE",
    )
    result = json.loads(TaskResult.objects.get(task_id=course.cover_task_id).result)
    assert result["exc_type"] == "CorruptImage"
    assert "truncated or corrupt" in str(result["exc_message"])
    log = job_log_since(task_id=course.cover_task_id).lines
    assert log[-1].startswith("!! CorruptImage: The image data is truncated or corrupt")
    assert default_storage.exists(str(course.cover.name))
    # An expected refusal: the reason, not a Python stack trace, on the job page.
    result_row = TaskResult.objects.get(task_id=course.cover_task_id)
    assert not result_row.traceback

    # Run again, the job would find its picture gone (refused pictures are not kept) and
    # end "Succeeded" having done nothing: its page offers no Retry and says what to do.
    page = client.get(f"/admin/django_celery_results/taskresult/{result_row.pk}/change/")
    html = page.content.decode()
    assert 'id="job-retry"' not in html
    assert (
        '<p id="job-retry-refusal">Retry not offered: Its input was refused; running it again '
        "would end the same way. The picture is not kept: upload another on the course&#x27;s "
        "page.</p>"
    ) in html
    # Nor does a bulk retry count it among the jobs it would retry (its confirmation).
    superuser = get_user_model().objects.get(username="editor2")
    picked = TaskResult.objects.filter(pk=result_row.pk)
    assert not job_actions.retry_candidates(picked, user=superuser).exists()


def test_an_unexpected_error_on_the_worker_keeps_its_traceback(
    worker: WorkerProcess, client: Client
) -> None:
    client.force_login(get_user_model().objects.create_superuser("editor3"))
    course = make_course("e2e-unexpected")
    post_cover(client, course, jpeg_bytes(photo(64, 48)), "small.jpg")
    wait_until(lambda: status_of(course) == "ready", timeout=60, message="variants")
    course.refresh_from_db()
    # A directory where the original should be: opening it fails with IsADirectoryError,
    # which is no refusal of the picture but a broken storage. One variant is missing, so
    # regenerating has to read the original.
    name = str(course.cover.name)
    default_storage.delete(name)
    default_storage.delete(str(CoverVariant.objects.filter(course=course)[0].file.name))
    Path(default_storage.path(name)).mkdir()
    try:
        client.post(
            "/admin/courses/course/",
            {"action": "regenerate_cover_variants", "_selected_action": [course.pk]},
        )
        course.refresh_from_db()
        wait_until(
            lambda: TaskResult.objects.get(task_id=course.cover_task_id).status == "FAILURE",
            timeout=60,
            message="the job to end FAILURE",
        )
    finally:
        Path(default_storage.path(name)).rmdir()
    result = TaskResult.objects.get(task_id=course.cover_task_id)
    assert "Traceback (most recent call last)" in result.traceback
    assert "IsADirectoryError" in result.traceback
    assert status_of(course) == "failed"


@pytest.mark.parametrize("fmt", ["JPEG", "MPO", "PNG", "WEBP", "GIF", "HEIF", "AVIF"])
def test_every_accepted_format_uploaded_in_the_admin_becomes_upright_clean_variants(
    fmt: str, worker: WorkerProcess, client: Client
) -> None:
    client.force_login(get_user_model().objects.create_superuser(f"editor-{fmt.lower()}"))
    course = make_course(f"e2e-{fmt.lower()}")
    # Stored sideways with orientation 6 where the format has one; animated formats and
    # MPO carry a second picture that must not be used.
    source = photo_file(fmt, quadrants(1200, 800), orientation=6)

    post_cover(client, course, source, "upload.bin")

    wait_until(lambda: status_of(course) != "pending", timeout=90, message="variants")
    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.READY, course.cover_error
    assert str(course.cover.name).endswith("." + sniff(source).extension)
    variants = list(CoverVariant.objects.filter(course=course))
    assert {v.spec_name for v in variants} == {spec.name for spec in COVER_SPECS}
    for variant in variants:
        expected = (variant.width, variant.width * 2 // 3)
        with default_storage.open(str(variant.file.name), "rb") as handle:
            data = handle.read()
        image = Image.open(io.BytesIO(data))
        assert Image.MIME[str(image.format)] == variant.content_type
        assert (variant.width, variant.height) == expected
        assert_upright_quadrants(image, expected)
        assert_no_metadata(data)
