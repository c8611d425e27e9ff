"""Writes for the catalogue: enrolment and lesson completion, refused in words the user reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction

from courses.models import Course, Enrolment, Lesson, LessonCompletion
from workers.errors import ApplicationError

if TYPE_CHECKING:
    from django.contrib.auth.models import User


class CatalogueError(ApplicationError):
    """A request the catalogue refuses; `str(exc)` is fit to show the user."""


class NotEnrolled(CatalogueError):
    pass


class AlreadyEnrolled(CatalogueError):
    pass


class AlreadyCompleted(CatalogueError):
    pass


class CourseNotPublished(CatalogueError):
    pass


def course_enrol(*, user: User, course: Course) -> Enrolment:
    if not course.is_published:
        raise CourseNotPublished(f"“{course}” is not open for enrolment.")
    try:
        with transaction.atomic():
            return Enrolment.objects.create(user=user, course=course)
    except IntegrityError as exc:
        raise AlreadyEnrolled(f"You are already enrolled in “{course}”.") from exc


def lesson_complete(*, user: User, lesson: Lesson) -> LessonCompletion:
    """Mark a lesson done; a second completion is refused with a clear message."""
    if not Enrolment.objects.filter(user=user, course_id=lesson.section.course_id).exists():
        raise NotEnrolled("Enrol in the course before completing its lessons.")
    # The unique constraint decides, so two concurrent requests cannot both succeed.
    try:
        with transaction.atomic():
            return LessonCompletion.objects.create(user=user, lesson=lesson)
    except IntegrityError as exc:
        raise AlreadyCompleted(f"“{lesson.title}” is already marked as complete.") from exc
