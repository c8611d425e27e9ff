"""A page read while another process commits: the commit lands after a chosen query of the
page's request, so a test can try every point of it in turn."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from django.db import connection, connections
from django.test import Client

if TYPE_CHECKING:
    # What the test client returns, as django-stubs names it (not a runtime name).
    from django.test.client import _MonkeyPatchedWSGIResponse


def commit_elsewhere(*statements: tuple[str, list[Any]]) -> None:
    """Run and commit each statement on a connection of its own, as a worker would."""
    other = connections.create_connection("default")
    try:
        for sql, params in statements:
            with other.cursor() as cursor:
                cursor.execute(sql, params)
    finally:
        other.close()


def get_with_commit_after_query(
    client: Client, url: str, *, at: int, commit: tuple[tuple[str, list[Any]], ...]
) -> tuple[_MonkeyPatchedWSGIResponse, int]:
    """GET `url`, committing `commit` elsewhere right after the request's `at`-th query (not
    at all for 0); the response and how many queries the request ran."""
    seen = 0

    def commit_there(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal seen
        result = execute(sql, params, many, context)
        seen += 1
        if seen == at:
            commit_elsewhere(*commit)
        return result

    with connection.execute_wrapper(commit_there):
        response = client.get(url)
    return response, seen


def pages_made_as_the_job_ends(
    page_at: Callable[[int], tuple[str, int]], *, more_queries_than: int
) -> Iterator[tuple[int, str]]:
    """A live job's page, made with the job ending after each of the page's queries in turn
    (`page_at(at)`: its HTML and how many queries it ran): each that says the job had ended
    as it was made, with the point; every other must reload when the job ends."""
    _, queries = page_at(0)
    assert queries > more_queries_than
    ended = 0
    for at in range(1, queries + 1):
        html, _ = page_at(at)
        if 'data-finished="1"' in html:
            ended += 1
            yield at, html
        else:
            assert 'data-finished="0"' in html, at  # it reloads when the job ends
    assert ended, "no page was made after the job had ended"
