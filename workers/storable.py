"""Text PostgreSQL cannot store, found before it reaches the database (a form error, not a
500): NUL, which neither text nor jsonb columns accept (`\\u0000` in JSON decodes to it), and
lone UTF-16 surrogates (`\\ud800`), which have no UTF-8 encoding."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError


def unstorable_character(value: Any) -> str | None:
    """The first unstorable character in a string or a JSON value (keys too), described;
    None when everything can be stored."""
    if isinstance(value, str):
        for char in value:
            if char == "\x00":
                return "a NUL character (\\u0000)"
            if "\ud800" <= char <= "\udfff":
                return f"a lone surrogate (\\u{ord(char):04x})"
        return None
    if isinstance(value, dict):
        items: list[Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        return None
    for item in items:
        found = unstorable_character(item)
        if found:
            return found
    return None


def validate_storable(value: Any) -> None:
    found = unstorable_character(value)
    if found:
        raise ValidationError(
            "This contains %(what)s, which cannot be stored.",
            params={"what": found},
            code="unstorable",
        )


class StorableJSONField(forms.JSONField):
    """The admin's form field for every JSON column (workers/apps.py installs it)."""

    default_validators = [validate_storable]

    def prepare_value(self, value: Any) -> Any:
        # The refused value goes back into the form: escaped, a lone surrogate can be sent.
        if not isinstance(value, str) and unstorable_character(value):
            return json.dumps(value, ensure_ascii=True, cls=self.encoder)
        return super().prepare_value(value)
