"""Reads for the catalogue. Each returns querysets whose related rows arrive in a fixed
number of queries, however many courses, sections or lessons there are."""

from __future__ import annotations

from django.db.models import Count, Prefetch, QuerySet
from django.urls import reverse
from django_celery_results.models import TaskResult

from courses.models import Course, CoverVariant, Lesson, Section
from workers import display
from workers.subjects import JobSubject


def _with_cover_variants(courses: QuerySet[Course]) -> QuerySet[Course]:
    return courses.prefetch_related(
        Prefetch("cover_variants", queryset=CoverVariant.objects.order_by("width", "spec_name"))
    )


def course_list_published() -> QuerySet[Course]:
    return _with_cover_variants(Course.objects.filter(is_published=True).order_by("title", "pk"))


def course_get_published(*, slug: str) -> Course | None:
    lessons = Lesson.objects.annotate(question_count=Count("questions")).order_by("position")
    sections = Section.objects.order_by("position").prefetch_related(
        Prefetch("lessons", queryset=lessons)
    )
    return (
        _with_cover_variants(Course.objects.filter(is_published=True, slug=slug))
        .prefetch_related(Prefetch("sections", queryset=sections))
        .first()
    )


def cover_job_subject(task_id: str) -> JobSubject | None:
    """The course whose cover variants a job builds (its latest such job), for the job's page."""
    course = Course.objects.filter(cover_task_id=task_id).first()
    if course is None:
        return None
    return JobSubject(
        label=f"Cover of course {course.title}",
        url=reverse("admin:courses_course_change", args=[course.pk]),
        state=course.get_cover_status_display(),
        message=course.cover_error,
    )


def outline_report_job_subject(task_id: str) -> JobSubject | None:
    """The course an outline report job reads (its one argument, the course's id)."""
    stored = TaskResult.objects.filter(task_id=task_id).values("task_args", "task_kwargs").first()
    if stored is None:
        return None
    args, kwargs = display.arguments_decoded(stored["task_args"], stored["task_kwargs"])
    course_id = args[0] if args else kwargs.get("course_id")
    if not isinstance(course_id, int):
        return None
    course = Course.objects.filter(pk=course_id).first()
    if course is None:
        return None
    return JobSubject(
        label=f"Outline of course {course.title}",
        url=reverse("admin:courses_course_change", args=[course.pk]),
        state="Published" if course.is_published else "Not published",
    )


def course_cover_variants(*, course_id: int) -> list[CoverVariant]:
    """A course's cover variants, smallest first."""
    return list(CoverVariant.objects.filter(course_id=course_id).order_by("width", "spec_name"))
