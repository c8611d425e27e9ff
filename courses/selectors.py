"""Reads for the catalogue. Each returns querysets whose related rows arrive in a fixed
number of queries, however many courses, sections or lessons there are."""

from __future__ import annotations

from django.db.models import Count, Prefetch, QuerySet

from courses.models import Course, CoverVariant, Lesson, Section


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
