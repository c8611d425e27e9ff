"""Error pages: the JSON API answers in JSON even when the server fails."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "Server error; it has been logged."}, status=500)
    return defaults.server_error(request)
