"""Admin building blocks shared by every app: run records are read-only in the admin."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


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
