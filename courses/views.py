"""The read-only JSON API for published courses: plain views returning JsonResponse.

Errors are answered in JSON too ({"error": "..."}), with the HTTP status that fits: a
client of a JSON API should never have to parse Django's HTML error pages.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.paginator import EmptyPage, PageNotAnInteger, Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from courses.models import Course, Lesson, Section
from courses.selectors import course_get_published, course_list_published

PAGE_SIZE = 50
SAFE_METHODS = ("GET", "HEAD")


def json_error(message: str, *, status: int) -> JsonResponse:
    return JsonResponse({"error": message}, status=status)


def api_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """GET/HEAD only, and a missing object or page answered as JSON, not as HTML.

    CSRF-exempt: nothing here writes, and a POST without a token would otherwise get
    Django's HTML 403 page instead of the JSON 405 below.
    """

    @csrf_exempt
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method not in SAFE_METHODS:
            response = json_error(f"{request.method} is not allowed here; use GET.", status=405)
            response["Allow"] = ", ".join(SAFE_METHODS)
            return response
        try:
            return view(request, *args, **kwargs)
        except Http404 as exc:
            return json_error(str(exc) or "Not found.", status=404)

    return wrapped


@api_view
def course_list(request: HttpRequest) -> JsonResponse:
    paginator = Paginator(course_list_published(), PAGE_SIZE)
    try:
        page = paginator.page(request.GET.get("page", 1))
    except (EmptyPage, PageNotAnInteger) as exc:
        raise Http404("No such page.") from exc
    base = request.build_absolute_uri(reverse("courses:course-list"))
    return JsonResponse(
        {
            "count": paginator.count,
            "next": f"{base}?page={page.next_page_number()}" if page.has_next() else None,
            "previous": (
                f"{base}?page={page.previous_page_number()}" if page.has_previous() else None
            ),
            "results": [_course(course, request) for course in page.object_list],
        }
    )


@api_view
def course_detail(request: HttpRequest, slug: str) -> JsonResponse:
    course = course_get_published(slug=slug)
    if course is None:
        raise Http404("No published course with that slug.")
    return JsonResponse(
        {
            **_course(course, request),
            "sections": [_section(section) for section in course.sections.all()],
        }
    )


@api_view
def not_found(request: HttpRequest, path: str = "") -> HttpResponse:
    """Any other address under the API."""
    raise Http404(f"No API endpoint at /api/{path}; the courses are at /api/courses/.")


def _course(course: Course, request: HttpRequest) -> dict[str, Any]:
    return {
        "id": course.pk,
        "slug": course.slug,
        "title": course.title,
        "summary": course.summary,
        "url": request.build_absolute_uri(reverse("courses:course-detail", args=[course.slug])),
        "cover": {
            "status": course.cover_status,
            # Presigned (short-lived) when media are on S3; ask again rather than cache.
            "variants": [
                {
                    "name": variant.spec_name,
                    "width": variant.width,
                    "height": variant.height,
                    "content_type": variant.content_type,
                    "url": request.build_absolute_uri(variant.file.url),
                }
                for variant in course.cover_variants.all()
            ],
        },
    }


def _section(section: Section) -> dict[str, Any]:
    return {
        "id": section.pk,
        "position": section.position,
        "title": section.title,
        "lessons": [_lesson(lesson) for lesson in section.lessons.all()],
    }


def _lesson(lesson: Lesson) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": lesson.pk,
        "position": lesson.position,
        "title": lesson.title,
        "kind": lesson.kind,
    }
    if lesson.kind == Lesson.Kind.QUIZ:
        # Questions and answers are not public; the count says how long the quiz is.
        data["question_count"] = lesson.question_count  # type: ignore[attr-defined]
    else:
        data["video_url"] = lesson.video_url or None
    return data
