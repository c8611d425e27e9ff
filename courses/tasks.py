"""Django Tasks API jobs of the catalogue (`@task`, run by opsqueue's backend on a worker).

The demo of workers/tasks_backend.py: an ordinary function, decorated, enqueued from the
course admin's action and by the dev stack's seed.
"""

from __future__ import annotations

from typing import Any

from courses.models import Course, Lesson
from workers.display import counted
from workers.tasks_api import task
from workers.tasks_backend import get_job_log


@task
def course_outline_report(course_id: int) -> dict[str, Any] | None:
    """Count a course's sections, lessons, quizzes and enrolments; the log lists each
    section. Reads only, so a second run is harmless; a deleted course gives None."""
    course = Course.objects.filter(pk=course_id).first()
    if course is None:
        return None
    log = get_job_log()
    log.line(f"Outline of “{course.title}”")
    lessons = quizzes = 0
    for section in course.sections.prefetch_related("lessons"):
        kinds = [lesson.kind for lesson in section.lessons.all()]
        lessons += len(kinds)
        quizzes += kinds.count(Lesson.Kind.QUIZ)
        log.line(f"  {section.position}. {section.title}: {counted(len(kinds), 'lesson')}")
    report = {
        "course": course.pk,
        "sections": course.sections.count(),
        "lessons": lessons,
        "quizzes": quizzes,
        "enrolments": course.enrolments.count(),
    }
    log.line(
        f"done: {counted(report['sections'], 'section')}, {counted(lessons, 'lesson')} of "
        f"which {counted(quizzes, 'quiz', 'quizzes')}, "
        f"{counted(report['enrolments'], 'enrolment')}"
    )
    return report
