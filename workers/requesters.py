"""Who is asking, for code that enqueues without being handed a `Requester`.

Domain services take `requester=` explicitly. Django's Tasks API has no place for it
(`my_task.enqueue(...)` takes only the task's own arguments), so the Tasks backend asks
`current_requester()`:

1. a requester stated with `requester_scope(...)` (a management command, a schedule, a
   script: `with requester_scope(Requester.cli("import_courses")): ...`);
2. else the user of the request being served (`RequesterMiddleware` keeps it);
3. else the job being run, when a task enqueues a follow-up;
4. else nobody said: the process, as a system requester, so the record still says where
   the job came from.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from django.http import HttpRequest, HttpResponse

from workers.enqueue import Requester

_stated: ContextVar[Requester | None] = ContextVar("opsqueue_requester", default=None)
_request: ContextVar[HttpRequest | None] = ContextVar("opsqueue_request", default=None)


@contextmanager
def requester_scope(requester: Requester) -> Iterator[Requester]:
    """Jobs enqueued inside this block are recorded as asked by `requester`."""
    token = _stated.set(requester)
    try:
        yield requester
    finally:
        _stated.reset(token)


def current_requester() -> Requester:
    stated = _stated.get()
    if stated is not None:
        return stated
    request = _request.get()
    if request is not None:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return Requester.for_user(user)
        return Requester.system(f"anonymous request {request.method} {request.path}"[:255])
    return Requester.system(f"process {Path(sys.argv[0]).name if sys.argv else '?'}")


def current_request() -> HttpRequest | None:
    """The request being served in this context, if any (kept by RequesterMiddleware)."""
    return _request.get()


class RequesterMiddleware:
    """Keeps the request being served, so a job enqueued during it names its user.

    The user is read only when a job is enqueued (`request.user` stays lazy)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)
