"""Enrolment and lesson completion: refusals are clear errors, never crashes."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from courses.models import Lesson, LessonCompletion, Section
from courses.services import (
    AlreadyCompleted,
    AlreadyEnrolled,
    CourseNotPublished,
    NotEnrolled,
    course_enrol,
    lesson_complete,
)
from tests.courses.conftest import make_course

pytestmark = pytest.mark.django_db


@pytest.fixture
def lesson() -> Lesson:
    section = Section.objects.create(course=make_course(), title="Intro", position=1)
    return Lesson.objects.create(section=section, title="Hello", position=1)


def test_an_enrolled_user_completes_a_lesson_once(lesson: Lesson) -> None:
    user = get_user_model().objects.create_user("ann")
    course_enrol(user=user, course=lesson.section.course)

    completion = lesson_complete(user=user, lesson=lesson)
    assert completion.lesson == lesson and completion.user == user

    with pytest.raises(AlreadyCompleted, match="“Hello” is already marked as complete"):
        lesson_complete(user=user, lesson=lesson)
    assert LessonCompletion.objects.count() == 1


def test_completing_without_enrolment_is_refused(lesson: Lesson) -> None:
    user = get_user_model().objects.create_user("ben")
    with pytest.raises(NotEnrolled, match="Enrol in the course"):
        lesson_complete(user=user, lesson=lesson)


def test_enrolling_twice_or_in_an_unpublished_course_is_refused(lesson: Lesson) -> None:
    user = get_user_model().objects.create_user("cat")
    course_enrol(user=user, course=lesson.section.course)
    with pytest.raises(AlreadyEnrolled, match="already enrolled"):
        course_enrol(user=user, course=lesson.section.course)
    with pytest.raises(CourseNotPublished, match="not open for enrolment"):
        course_enrol(user=user, course=make_course("draft", published=False))
