"""Django's user admin under the project's one rule: what a person may not do is not
offered. Django's user page shows everyone who may open it a "Reset password" button,
whose page then refuses those without `change_user`; here they see the password's summary
without the button.

A user with entries in the admin history (every job they started, every switch, retry or
discard) is not deleted from the admin: Django's LogEntry goes with its user (CASCADE), so
deleting them would erase who did what and when. They are deactivated instead."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import ReadOnlyPasswordHashWidget
from django.http import HttpRequest

from workers.admin_base import HistoryKeepsRecordMixin

User = get_user_model()


class PasswordSummaryWidget(ReadOnlyPasswordHashWidget):
    """The password's algorithm and salt summary, without the button to its page."""

    template_name = "admin/auth/user/password_summary.html"


admin.site.unregister(User)


@admin.register(User)
class GuardedUserAdmin(HistoryKeepsRecordMixin, UserAdmin):
    history_name = "admin history (deactivate them instead)"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and LogEntry.objects.filter(user_id=obj.pk).exists():
            return False
        return super().has_delete_permission(request, obj)

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
