"""A cover uploaded in the admin while media storage (S3) is down or hangs: the person is
told at once, the course keeps its good cover, and nothing is half-saved.

Media live in a bucket of an endpoint of the test's own (a real moto_server), which is
frozen with SIGSTOP (it accepts connections and never answers) or halted.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client, override_settings

from courses.models import Course
from courses.services import (
    course_cover_regenerate,
    course_cover_set,
    course_cover_variants_build,
)
from tests.courses.conftest import make_course, storage_from_settings, upload
from tests.support.servers import AwsEndpoint, wait_until
from workers.enqueue import Requester
from workers.models import Job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.waits]

# Generous, and still well short of botocore's own 60 s read timeout (three attempts of it
# held such a request three minutes before).
ANSWER_WITHIN_SECONDS = 30


@pytest.fixture
def media_bucket(
    endpoint: AwsEndpoint, sqs_queues: AwsEndpoint, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, str]]:
    """Media in a fresh bucket of the test's own endpoint, configured as settings.py does
    (SQS stays the session's)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint.url)
    bucket = f"media-{uuid.uuid4().hex[:8]}"
    s3 = endpoint.client("s3")
    s3.create_bucket(Bucket=bucket)
    with override_settings(
        STORAGES={**settings.STORAGES, "default": storage_from_settings(bucket)}
    ):
        yield s3, bucket


def keys(s3: Any, bucket: str) -> set[str]:
    return {item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def course_with_a_good_cover(image: bytes, capture: Any) -> Course:
    course = make_course()
    with capture(execute=True):
        course = course_cover_set(
            course_id=course.pk, upload=upload(image), requester=Requester.cli("t")
        )
    course_cover_variants_build(
        course_id=course.pk, source_hash=course.cover_sha256, task_id=str(uuid.uuid4())
    )
    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.READY
    return course


def post_cover(client: Client, course: Course, image: bytes) -> Any:
    """Upload `image` as the course's cover on its admin page; the response, or None if it
    did not answer within ANSWER_WITHIN_SECONDS."""
    answer: list[Any] = []

    def post() -> None:
        try:
            answer.append(
                client.post(
                    f"/admin/courses/course/{course.pk}/change/",
                    {
                        "title": course.title,
                        "slug": course.slug,
                        "summary": "",
                        "is_published": "on",
                        "new_cover": SimpleUploadedFile("photo.jpg", image, "image/jpeg"),
                        "sections-TOTAL_FORMS": "0",
                        "sections-INITIAL_FORMS": "0",
                        "cover_variants-TOTAL_FORMS": "0",
                        "cover_variants-INITIAL_FORMS": "0",
                    },
                )
            )
        finally:
            # The request ran on this thread's own connection; left open, it kept the
            # test database from being dropped.
            connection.close()

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    thread.join(timeout=ANSWER_WITHIN_SECONDS)
    return answer[0] if answer else None


def cover_fields(course: Course) -> dict[str, Any]:
    """What the course says of its cover (not `updated_at`: the good cover's own job, sent
    to SQS, may be run again by a worker of another test, which touches the row)."""
    return dict(
        Course.objects.values(
            "cover",
            "cover_sha256",
            "cover_status",
            "cover_error",
            "cover_previous",
            "cover_task_id",
        ).get(pk=course.pk)
    )


def test_an_upload_while_s3_hangs_is_refused_at_once_and_the_course_keeps_its_cover(
    admin_client: Client,
    endpoint: AwsEndpoint,
    media_bucket: tuple[Any, str],
    cover_jpeg: bytes,
    other_jpeg: bytes,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from media_pipeline.storage import media_storage_health

    s3, bucket = media_bucket
    course = course_with_a_good_cover(cover_jpeg, django_capture_on_commit_callbacks)
    before = cover_fields(course)
    stored = keys(s3, bucket)
    jobs = Job.objects.count()
    # Making the cover just now found S3 answering; the upload below comes later than that
    # finding is trusted (HEALTH_TTL_SECONDS).
    media_storage_health.reset()

    endpoint.freeze()
    try:
        response = post_cover(admin_client, course, other_jpeg)
        assert response is not None, "the upload hung on S3 instead of answering"
        assert response.status_code == 302
        page = admin_client.get(response["Location"]).content.decode()
        assert "Media storage is unreachable (ReadTimeoutError)" in page
        assert "the cover was not changed and nothing was queued" in page
        assert cover_fields(course) == before
        assert Job.objects.count() == jobs
        # A second upload meanwhile is refused from what the first one learnt.
        again = post_cover(admin_client, course, other_jpeg)
        assert again is not None and again.status_code == 302
    finally:
        endpoint.thaw()

    assert keys(s3, bucket) == stored  # nothing half-saved
    # Once S3 answers again, uploads are taken (after the refusal's short memory).
    wait_until(
        lambda: (
            post_cover(admin_client, course, other_jpeg) is not None
            and Course.objects.get(pk=course.pk).cover_sha256 != before["cover_sha256"]
        ),
        timeout=60,
        interval=1,
        message="an upload to be taken once S3 answers again",
    )


def test_s3_lost_between_the_check_and_storing_gives_the_course_its_good_cover_back(
    admin_client: Client,
    endpoint: AwsEndpoint,
    media_bucket: tuple[Any, str],
    cover_jpeg: bytes,
    other_jpeg: bytes,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """S3 answered the upload's check and is gone when the committed upload is stored: the
    course must not read "variants being made" over an original that was never stored."""
    from media_pipeline.storage import media_storage_health

    course = course_with_a_good_cover(cover_jpeg, django_capture_on_commit_callbacks)
    good = Course.objects.get(pk=course.pk)
    endpoint.halt()
    media_storage_health.confirm()  # as a check a moment ago left it

    response = post_cover(admin_client, course, other_jpeg)

    assert response is not None and response.status_code == 302
    course.refresh_from_db()
    assert (course.cover.name, course.cover_sha256, course.cover_status) == (
        good.cover.name,
        good.cover_sha256,
        Course.CoverStatus.READY,
    )
    assert course.cover_error.startswith(
        "The new cover was not used, the previous one is kept: The uploaded file could not be "
        "stored (EndpointConnectionError); upload it again."
    )
    assert not course.cover_previous
    # The admin says so too; it read "Cover stored; its variants are being made".
    shown = [str(m) for m in get_messages(response.wsgi_request)]
    assert course.cover_error in shown and not any("Cover stored" in m for m in shown), shown


def test_a_regenerate_job_meeting_a_hanging_s3_fails_the_cover_and_a_retry_works(
    media_bucket: tuple[Any, str],
    endpoint: AwsEndpoint,
    cover_jpeg: bytes,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """S3 hangs as a regenerate job looks which of the variants it has are stored: the
    course must say the variants failed (not "being made" for good), and the job once S3
    answers again makes them."""
    course = course_with_a_good_cover(cover_jpeg, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):  # the job is run by hand below
        course_cover_regenerate(course_id=course.pk, requester=Requester.cli("t"))
    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.PENDING
    # Short bounds (a fresh storage reads them), so the hang costs a second, not twenty.
    with override_settings(
        MEDIA_S3_READ_TIMEOUT=1.0, MEDIA_S3_ATTEMPTS=1, STORAGES={**settings.STORAGES}
    ):
        endpoint.freeze()
        try:
            with pytest.raises(Exception, match="Read timeout"):
                course_cover_variants_build(
                    course_id=course.pk, source_hash=course.cover_sha256, task_id=str(uuid.uuid4())
                )
        finally:
            endpoint.thaw()
        course.refresh_from_db()
        assert course.cover_status == Course.CoverStatus.FAILED
        assert course.cover_error.startswith("Making the variants failed (ReadTimeoutError")

        course_cover_variants_build(
            course_id=course.pk, source_hash=course.cover_sha256, task_id=str(uuid.uuid4())
        )
    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.READY
