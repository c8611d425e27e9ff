"""Admin building blocks shared by every app: run records are read-only in the admin."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import model_format_dict
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect


class ReadOnlyAdminMixin:
    """Rows written by services and workers: the admin shows them and never adds or edits.

    `obj` is accepted for inlines, whose has_add_permission takes it.
    """

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ImmutableAdminMixin(ReadOnlyAdminMixin):
    """Records that are also an audit trail: not deletable from the admin either."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class HistoryKeepsRecordMixin:
    """Records a history keeps (a workspace its runs, a database its actions): their
    `has_delete_permission(request, obj)` says False once they have one. Django's bulk delete
    would then only lead to "Cannot delete …"; here it leaves those out, says which and why,
    and asks to confirm the rest as Django does."""

    history_name = "history"  # what keeps a record, in words: "runs", "actions"

    def delete_kept_reason(self, request: HttpRequest, obj: Any) -> str:
        """Why `obj`, which this person may not delete, is left out: in the bulk delete's
        "Not deleted, …" message."""
        return f"kept by their {self.history_name}"

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = super().get_actions(request)  # type: ignore[misc]
        if "delete_selected" in actions:
            _, name, description = actions["delete_selected"]
            actions[name] = (_delete_selected_but_kept, name, description)
        return actions


def _delete_selected_but_kept(modeladmin: Any, request: HttpRequest, queryset: Any) -> Any:
    from django.contrib import messages
    from django.contrib.admin.actions import delete_selected

    kept = [obj for obj in queryset if not modeladmin.has_delete_permission(request, obj)]
    if kept:
        if "post" not in request.POST:  # said once, on the confirmation page or instead of it
            by_reason: dict[str, list[str]] = {}
            for obj in kept:
                by_reason.setdefault(modeladmin.delete_kept_reason(request, obj), []).append(
                    str(obj)
                )
            for reason, names in by_reason.items():
                modeladmin.message_user(
                    request, f"Not deleted, {reason}: {', '.join(names)}.", messages.WARNING
                )
        queryset = queryset.exclude(pk__in=[obj.pk for obj in kept])
        if not queryset.exists():
            return None
    return delete_selected(modeladmin, request, queryset)


def action_refusal(model_admin: Any, request: HttpRequest) -> HttpResponse | None:
    """A changelist POST of an action this user is not offered (too few permissions), said
    as such and sent back to the list; None for anything else (Django goes on as usual).

    Django alone answered such a POST with the list as it stood, silently (no action
    offered to the user at all), or with "No action selected." (some other action offered):
    nothing was done, but nothing said why."""
    post = request.POST
    if request.method != "POST" or "action" not in post or "_save" in post:
        return None
    if not model_admin.has_view_or_change_permission(request):
        return None  # the list itself refuses (403)
    if "index" in post:  # the action bar: which of its action selects was used
        try:
            name = post.getlist("action")[int(post["index"])]
        except (ValueError, IndexError):
            return None
    elif helpers.ACTION_CHECKBOX_NAME in post:  # the confirmation page of an action
        name = post["action"]
    else:
        return None
    if name in model_admin.get_actions(request):
        return None
    # Every action of the admin before the per-request permission filter (Django's own list).
    described = {n: d for _f, n, d in model_admin._get_base_actions()}
    if name not in described:
        return None  # no such action: Django says "No action selected."
    description = described[name] % model_format_dict(model_admin.opts)
    model_admin.message_user(
        request,
        f"Not done: “{description}” needs a permission you do not have. Nothing was changed.",
        messages.ERROR,
    )
    return HttpResponseRedirect(request.get_full_path())
