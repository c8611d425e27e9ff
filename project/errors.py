"""Error pages: the JSON API answers in JSON even when the server fails; a refusal says why
and where to go."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views import defaults


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"error": "Server error; it has been logged."}, status=500)
    return defaults.server_error(request)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """A refusal (403) as an admin page: whose account lacks a permission, and the way back.
    Django's own read "403 Forbidden" and nothing else, with no link: what met a person whose
    permission was taken away while a page stood open, when they pressed its button."""
    context = {**admin.site.each_context(request), "title": "Permission needed"}
    return render(request, "403.html", context, status=403)
