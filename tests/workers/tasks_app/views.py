"""Views that enqueue Django tasks inside the request's transaction."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, JsonResponse

from tests.workers.tasks_app.tasks import add


class RolledBack(Exception):
    pass


@transaction.atomic
def enqueue_add(request: HttpRequest) -> JsonResponse:
    result = add.enqueue(int(request.GET["a"]), int(request.GET["b"]))
    if request.GET.get("fail"):
        # After the enqueue, inside the same transaction: everything must roll back.
        raise RolledBack("the view failed after enqueueing")
    return JsonResponse({"id": result.id, "status": result.status})
