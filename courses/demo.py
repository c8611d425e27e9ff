"""Demo catalogue for the dev stack: a published course with sections, lessons, a quiz and a
generated cover photo whose variants the dev stack's media worker makes within seconds.

Idempotent: run on every `make run`. The cover is stored sideways with an EXIF orientation
tag, as phone cameras do, so the variants show the orientation being applied.
"""

from __future__ import annotations

from typing import Any

from django.core.files.base import ContentFile
from django.db import transaction
from django_celery_results.models import TaskResult
from PIL import Image

from courses.models import Course, Lesson, QuizQuestion, Section
from courses.services import course_cover_regenerate, course_cover_set
from courses.tasks import course_outline_report
from media_pipeline.samples import jpeg_bytes, photo
from workers.enqueue import Requester
from workers.requesters import requester_scope

SLUG = "photography-basics"
OUTLINE = {
    "Getting started": [
        ("What a camera records", Lesson.Kind.LESSON, "https://example.com/videos/intro.mp4"),
        ("Light and exposure", Lesson.Kind.LESSON, ""),
        ("Check yourself", Lesson.Kind.QUIZ, ""),
    ],
    "Composition": [
        ("The rule of thirds", Lesson.Kind.LESSON, ""),
        ("Leading lines", Lesson.Kind.LESSON, "https://example.com/videos/lines.mp4"),
    ],
}


def seed(*, stdout: Any) -> None:
    course = _catalogue()
    requester = Requester.system("demo seed")
    if not TaskResult.objects.filter(task_name=course_outline_report.module_path).exists():
        # A job through Django's Tasks API, beside the opsqueue-native ones.
        with requester_scope(requester), transaction.atomic():
            result = course_outline_report.enqueue(course.pk)
        stdout.write(f"demo course “{course}”: outline report queued (Django task {result.id})")
    if not course.cover:
        course = course_cover_set(
            course_id=course.pk,
            upload=ContentFile(_sideways_cover(), name="demo-cover.jpg"),
            requester=requester,
        )
        stdout.write(f"demo course “{course}”: cover uploaded, variants queued")
    elif course.cover_status != Course.CoverStatus.READY:
        course_cover_regenerate(course_id=course.pk, requester=requester)
        stdout.write(f"demo course “{course}”: cover variants queued again")
    else:
        stdout.write(f"demo course “{course}”: ready")


@transaction.atomic
def _catalogue() -> Course:
    course, created = Course.objects.get_or_create(
        slug=SLUG,
        defaults={
            "title": "Photography basics",
            "summary": "Exposure, light and composition in five short lessons.",
            "is_published": True,
        },
    )
    if not created:
        return course
    for section_position, (section_title, lessons) in enumerate(OUTLINE.items(), start=1):
        section = Section.objects.create(
            course=course, title=section_title, position=section_position
        )
        for position, (title, kind, video_url) in enumerate(lessons, start=1):
            lesson = Lesson.objects.create(
                section=section,
                title=title,
                position=position,
                kind=kind,
                video_url=video_url,
                body="" if kind == Lesson.Kind.QUIZ else f"Notes for “{title}”.",
            )
            if kind == Lesson.Kind.QUIZ:
                QuizQuestion.objects.create(
                    lesson=lesson,
                    position=1,
                    prompt="Which setting controls depth of field most directly?",
                    options=["Shutter speed", "Aperture", "ISO"],
                    correct_option=1,
                )
    return course


def _sideways_cover() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    upright = photo(3000, 2000, seed=7)
    return jpeg_bytes(upright.transpose(Image.Transpose.ROTATE_90), exif=exif.tobytes())
