"""What both terraform admins share: the permissions, and calling a service on a person's
behalf (a refusal is reported to them, anything else is a bug)."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import admin, messages
from django.http import HttpRequest

from workers.admin_links import refusal_report
from workers.errors import ApplicationError

PLAN_PERM = "terraform.plan_terraformworkspace"
APPLY_PERM = "terraform.apply_terraformworkspace"
DESTROY_PERM = "terraform.destroy_terraformworkspace"
FORCE_UNLOCK_PERM = "terraform.force_unlock_terraformworkspace"


def service_call_report(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    call: Callable[..., object],
    ok: str | None = None,
) -> bool:
    """Call a service; tell the user how it went (`ok`: the message when it worked)."""
    try:
        call()
    except ApplicationError as exc:  # a refusal, or the job queue unreachable
        refusal_report(modeladmin, request, exc)
        return False
    if ok:
        modeladmin.message_user(request, ok, level=messages.SUCCESS)
    return True
