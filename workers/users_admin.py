"""Django's user admin under the project's one rule: what a person may not do is not
offered. Django's user page shows everyone who may open it a "Reset password" button,
whose page then refuses those without `change_user`; here they see the password's summary
without the button.

A user with entries in the admin history (every job they started, every switch, retry or
discard) is not deleted from the admin: Django's LogEntry goes with its user (CASCADE), so
deleting them would erase who did what and when. They are deactivated instead.

Holding `change_user` is not a way to more permissions than one holds. Django's user page
lets whoever may change users tick "Superuser status" and any permission or group, their
own included, and set the password of a superuser. Here only a superuser changes who holds
what (superuser status, groups, permissions; on a group's page, its permissions), and
others may change or delete only the accounts that hold nothing they do not: a superuser's
page, or the page of someone with a permission they lack, is theirs to look at only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import ReadOnlyPasswordHashWidget
from django.contrib.auth.models import Group, Permission
from django.db.models import Q
from django.http import HttpRequest

from workers.admin_base import HistoryKeepsRecordMixin

User = get_user_model()


class PasswordSummaryWidget(ReadOnlyPasswordHashWidget):
    """The password's algorithm and salt summary, without the button to its page."""

    template_name = "admin/auth/user/password_summary.html"


class SuperuserGrantsMixin:
    """`granting_fields`, which say who holds which permissions, are read-only for anyone
    but a superuser."""

    granting_fields: tuple[str, ...] = ()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        if request.user.is_superuser:
            return fields
        return (*fields, *self.granting_fields)


def user_outranks(user: Any, editor: Any) -> bool:
    """Whether `user` is a superuser or holds a permission `editor` does not (a superuser
    outranks nobody). Read from the rows, not from `user.get_all_permissions()`, which is
    empty while the account is inactive: reactivating it would hand its permissions on."""
    if editor.is_superuser:
        return False
    if user.is_superuser:
        return True
    held = Permission.objects.filter(Q(user=user) | Q(group__user=user)).values_list(
        "content_type__app_label", "codename"
    )
    return not {f"{app_label}.{codename}" for app_label, codename in held} <= (
        editor.get_all_permissions()
    )


admin.site.unregister(User)


@admin.register(User)
class GuardedUserAdmin(SuperuserGrantsMixin, HistoryKeepsRecordMixin, UserAdmin):
    history_name = "admin history (deactivate them instead)"
    granting_fields = ("is_superuser", "groups", "user_permissions")

    def _outranks(self, request: HttpRequest, user: Any) -> bool:
        """`user_outranks` once per user and request: Django asks for the permissions on
        one page several times over, and each answer read the user's permission rows."""
        answers: dict[int, bool] = request.__dict__.setdefault("_users_outranking", {})
        if user.pk not in answers:
            answers[user.pk] = user_outranks(user, request.user)
        return answers[user.pk]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and self._outranks(request, obj):
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and self._outranks(request, obj):
            return False
        if obj is not None and LogEntry.objects.filter(user_id=obj.pk).exists():
            return False
        return super().has_delete_permission(request, obj)

    def delete_kept_reason(self, request: HttpRequest, obj: Any) -> str:
        if self._outranks(request, obj):
            return "they hold permissions you do not"
        return super().delete_kept_reason(request, obj)

    def get_form(  # type: ignore[override]  # as django-stubs' UserAdmin.get_form
        self, request: HttpRequest, obj: Any = None, **kwargs: Any
    ) -> Any:
        form: Any = super().get_form(request, obj, **kwargs)
        if obj is None or self.has_change_permission(request, obj):
            return form

        class LookOnlyUserForm(form):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                # The instance's own copy of the field: the class's is shared with Django's.
                if "password" in self.fields:
                    self.fields["password"].widget = PasswordSummaryWidget()

        return LookOnlyUserForm


admin.site.unregister(Group)


@admin.register(Group)
class GuardedGroupAdmin(SuperuserGrantsMixin, GroupAdmin):
    """A group's members hold its permissions: only a superuser changes them."""

    granting_fields = ("permissions",)
