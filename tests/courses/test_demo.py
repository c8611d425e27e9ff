"""The dev stack's demo course: seeded once, cover queued, variants come out upright."""

from __future__ import annotations

import io
from typing import Any

import pytest
from django_celery_results.models import TaskResult

from courses import demo
from courses.models import Course, Lesson
from courses.services import course_cover_variants_build
from tests.support.broker import publishing_to

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sqs_queues", "media_root")]


@pytest.fixture(autouse=True)
def queues_no_worker_reads(sqs_queues: Any) -> Any:
    """The test builds the cover itself: its job goes where no shared worker reads."""
    with publishing_to("opsqueue-unread-demo-"):
        yield


def demo_jobs() -> int:
    """Jobs the seed queued (a session's shared worker may record others of its own)."""
    return TaskResult.objects.filter(
        task_name="media_pipeline.tasks.course_cover_variants_build"
    ).count()


def outline_reports() -> int:
    return TaskResult.objects.filter(task_name="courses.tasks.course_outline_report").count()


def test_demo_seed_is_idempotent_and_its_sideways_photo_comes_out_upright(
    django_capture_on_commit_callbacks: Any,
) -> None:
    out = io.StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        demo.seed(stdout=out)
    course = Course.objects.get(slug=demo.SLUG)
    assert course.is_published and course.cover_status == Course.CoverStatus.PENDING
    assert course.sections.count() == 2
    assert Lesson.objects.filter(section__course=course, kind=Lesson.Kind.QUIZ).count() == 1
    assert demo_jobs() == 1
    # Beside the cover's variants, the outline report through Django's Tasks API.
    assert outline_reports() == 1

    course_cover_variants_build(
        course_id=course.pk, source_hash=course.cover_sha256, task_id=course.cover_task_id
    )
    variant = course.cover_variants.get(spec_name="w800-jpeg")
    assert (variant.width, variant.height) == (800, 533)  # stored 2000x3000 with EXIF 6

    with django_capture_on_commit_callbacks(execute=True):
        demo.seed(stdout=out)
    assert Course.objects.count() == 1 and demo_jobs() == 1 and outline_reports() == 1
    assert out.getvalue().endswith("ready")
