"""The read-only JSON API: published courses only, cover variant URLs, bounded queries."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from courses.models import Course, CoverVariant, Lesson, QuizQuestion, Section
from tests.courses.conftest import make_course

pytestmark = pytest.mark.django_db

LIST_QUERIES = 3  # count, the page, the cover variants of the page
DETAIL_QUERIES = 4  # the course, its cover variants, its sections, their lessons


def with_variants(course: Course) -> Course:
    """Give a course a ready cover (rows only: the API reads rows, not pixels)."""
    sha = f"{course.pk:064x}"
    Course.objects.filter(pk=course.pk).update(
        cover=f"covers/originals/{sha}.jpg", cover_sha256=sha, cover_status="ready"
    )
    for width, fmt in ((200, "jpg"), (200, "webp"), (800, "jpg")):
        CoverVariant.objects.create(
            course=course,
            spec_name=f"w{width}-{fmt}",
            source_sha256=sha,
            file=f"covers/variants/{sha}-{width}.{fmt}",
            width=width,
            height=width // 2,
            content_type=f"image/{'jpeg' if fmt == 'jpg' else fmt}",
            size_bytes=100,
        )
    return course


def with_outline(course: Course, sections: int, lessons: int) -> Course:
    for s in range(1, sections + 1):
        section = Section.objects.create(course=course, title=f"S{s}", position=s)
        for n in range(1, lessons + 1):
            kind = Lesson.Kind.QUIZ if n == lessons else Lesson.Kind.LESSON
            lesson = Lesson.objects.create(section=section, title=f"L{n}", position=n, kind=kind)
            if kind == Lesson.Kind.QUIZ:
                for q in range(2):
                    QuizQuestion.objects.create(
                        lesson=lesson, position=q, prompt="?", options=["a", "b"], correct_option=1
                    )
    return course


def get_json(client: Client, url: str, queries: int) -> Any:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, response.content
    assert len(captured) == queries, [q["sql"] for q in captured.captured_queries]
    return response.json()


@pytest.mark.parametrize("courses", [1, 40])
def test_list_shows_published_courses_with_cover_urls_in_a_fixed_number_of_queries(
    client: Client, courses: int
) -> None:
    for n in range(courses):
        with_variants(make_course(f"course-{n:02}"))
    make_course("draft", published=False)

    data = get_json(client, "/api/courses/", LIST_QUERIES)

    assert data["count"] == courses
    assert "draft" not in {c["slug"] for c in data["results"]}
    first = data["results"][0]
    assert first["slug"] == "course-00"
    assert first["url"] == "http://testserver/api/courses/course-00/"
    assert first["cover"]["status"] == "ready"
    assert [(v["name"], v["width"]) for v in first["cover"]["variants"]] == [
        ("w200-jpg", 200),
        ("w200-webp", 200),
        ("w800-jpg", 800),
    ]
    assert first["cover"]["variants"][1]["url"].startswith("http://testserver/media/covers/")
    assert first["cover"]["variants"][1]["content_type"] == "image/webp"


def test_list_is_paginated(client: Client) -> None:
    for n in range(55):
        make_course(f"c-{n:02}")
    first = get_json(client, "/api/courses/", LIST_QUERIES)
    assert len(first["results"]) == 50 and first["next"].endswith("?page=2")
    second = get_json(client, first["next"], LIST_QUERIES)
    assert len(second["results"]) == 5 and second["next"] is None
    assert client.get("/api/courses/?page=9").status_code == 404


@pytest.mark.parametrize(("sections", "lessons"), [(1, 1), (12, 15)])
def test_detail_has_sections_lessons_and_variants_in_a_fixed_number_of_queries(
    client: Client, sections: int, lessons: int
) -> None:
    course = with_outline(with_variants(make_course("deep")), sections, lessons)

    data = get_json(client, f"/api/courses/{course.slug}/", DETAIL_QUERIES)

    assert len(data["cover"]["variants"]) == 3
    assert [s["position"] for s in data["sections"]] == list(range(1, sections + 1))
    last = data["sections"][-1]["lessons"]
    assert [lesson["position"] for lesson in last] == list(range(1, lessons + 1))
    assert last[-1]["kind"] == "quiz" and last[-1]["question_count"] == 2
    assert "correct_option" not in str(data)


def json_error(response: Any, status: int) -> str:
    """The API's errors are JSON, like its answers: {"error": "..."} with the right status."""
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    error: str = json.loads(response.content)["error"]
    return error


def test_unpublished_or_unknown_courses_are_not_found_in_json(client: Client) -> None:
    make_course("draft", published=False)
    assert (
        json_error(client.get("/api/courses/draft/"), 404) == "No published course with that slug."
    )
    assert (
        json_error(client.get("/api/courses/nope/"), 404) == "No published course with that slug."
    )
    assert json_error(client.get("/api/courses/?page=x"), 404) == "No such page."
    assert "/api/courses/" in json_error(client.get("/api/lessons/"), 404)


def test_the_api_is_read_only_and_says_so_in_json(client: Client) -> None:
    make_course("c")
    response = client.post("/api/courses/")
    assert "use GET" in json_error(response, 405) and response["Allow"] == "GET, HEAD"
    assert "DELETE is not allowed" in json_error(client.delete("/api/courses/c/"), 405)


def test_a_write_without_a_csrf_token_is_refused_in_json_not_as_an_html_403() -> None:
    # A real client sends no CSRF token; Django's test client skips the check by default.
    client = Client(enforce_csrf_checks=True)
    make_course("c")
    assert "use GET" in json_error(client.post("/api/courses/"), 405)
    assert "DELETE is not allowed" in json_error(client.delete("/api/courses/c/"), 405)


def test_the_api_root_is_a_json_404_pointing_at_the_courses(client: Client) -> None:
    assert "/api/courses/" in json_error(client.get("/api/"), 404)
    assert client.get("/api").headers["Location"] == "/api/"


def test_a_server_error_under_the_api_is_answered_in_json() -> None:
    from django.test import RequestFactory

    from project.errors import server_error

    api = server_error(RequestFactory().get("/api/courses/"))
    assert json_error(api, 500) == "Server error; it has been logged."
    page = server_error(RequestFactory().get("/admin/"))
    assert page.status_code == 500 and page["Content-Type"].startswith("text/html")
