"""A cover job's message delivered again after the job succeeded (SQS could not be told it
was done: its DeleteMessage failed in an outage, or the visibility timeout ran out first).

SQS redelivers the very message it never saw deleted; the test sends that same message (same
task id and arguments) again, on its own queues, to a real media worker with media on S3.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings
from django_celery_results.models import TaskResult

from courses.models import Course, CoverVariant
from courses.services import course_cover_set
from tests.courses.conftest import S3MediaWorker, make_course, upload
from tests.support.broker import publishing_to
from tests.support.servers import wait_until
from workers.enqueue import Requester
from workers.outbox import OutboundJob, publish_now

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.waits]


def test_a_cover_job_delivered_again_after_it_succeeded_rebuilds_nothing_and_keeps_its_record(
    s3_media_worker: S3MediaWorker, cover_jpeg: bytes
) -> None:
    from media_pipeline.tasks import course_cover_variants_build

    media, worker = s3_media_worker, s3_media_worker.worker

    def stored_objects() -> dict[str, object]:
        listed = media.s3.list_objects_v2(Bucket=media.bucket)["Contents"]
        return {obj["Key"]: obj["LastModified"] for obj in listed}

    with override_settings(STORAGES={**settings.STORAGES, "default": media.storage}):
        with publishing_to(media.prefix):
            course = course_cover_set(
                course_id=make_course().pk,
                upload=upload(cover_jpeg),
                requester=Requester.cli("t"),
            )
        wait_until(
            lambda: Course.objects.get(pk=course.pk).cover_status == Course.CoverStatus.READY,
            timeout=60,
            message="the cover's variants",
        )
        task_id = course.cover_task_id
        wait_until(
            lambda: TaskResult.objects.filter(task_id=task_id, status="SUCCESS").exists(),
            message="the job's result",
        )
        finished = TaskResult.objects.get(task_id=task_id)
        variants = list(CoverVariant.objects.filter(course=course).values())
        objects = stored_objects()

        with publishing_to(media.prefix):
            publish_now(
                OutboundJob(
                    task=course_cover_variants_build,
                    task_id=task_id,
                    args=[course.pk, course.cover_sha256],
                    kwargs={},
                    options={"queue": "media"},
                )
            )
        wait_until(
            lambda: (
                f"[{task_id}] ignored" in worker.log_text()
                or worker.log_text().count(f"[{task_id}] succeeded") == 2
            ),
            timeout=30,
            message="the message delivered again to be handled",
        )
    assert worker.log_text().count(f"[{task_id}] received") == 2
    assert f"[{task_id}] ignored" in worker.log_text()  # dropped, not run again
    again = TaskResult.objects.get(task_id=task_id)
    assert (again.status, again.result, again.worker) == (
        "SUCCESS",
        finished.result,
        finished.worker,
    )
    assert (again.date_started, again.date_done) == (finished.date_started, finished.date_done)
    assert list(CoverVariant.objects.filter(course=course).values()) == variants
    assert stored_objects() == objects
    assert Course.objects.get(pk=course.pk).cover_status == Course.CoverStatus.READY
