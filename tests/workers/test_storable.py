"""Values PostgreSQL cannot store are found before they reach it, in every admin form."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import models
from django.test import RequestFactory

from workers.storable import StorableJSONField, unstorable_character


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("plain", None),
        ({"a": ["b", {"c": 1}]}, None),
        ("a\x00b", "a NUL character (\\u0000)"),
        ({"k\x00": "v"}, "a NUL character (\\u0000)"),
        ([1, ["\ud800"]], "a lone surrogate (\\ud800)"),
    ],
)
def test_unstorable_characters_are_found_in_strings_keys_and_nested_values(
    value: object, found: str | None
) -> None:
    assert unstorable_character(value) == found


@pytest.mark.django_db
def test_every_json_field_of_every_admin_form_and_inline_refuses_them() -> None:
    request = RequestFactory().get("/")
    request.user = get_user_model()(is_superuser=True, is_staff=True, is_active=True)
    checked = 0
    for model_admin in admin.site._registry.values():
        admins = [model_admin, *model_admin.get_inline_instances(request)]
        for each in admins:
            for field in each.model._meta.get_fields():
                if isinstance(field, models.JSONField) and field.editable:
                    form_field = each.formfield_for_dbfield(field, request)
                    assert isinstance(form_field, StorableJSONField), f"{each}: {field}"
                    checked += 1
    assert checked >= 2  # workspace variables, quiz options
