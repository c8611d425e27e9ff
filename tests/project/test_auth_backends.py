"""The user backend loads what Django's ModelBackend loads, and refuses whom it refuses."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from project.auth_backends import UserBackend

pytestmark = pytest.mark.django_db

PASSWORD = "pw-backend-1"


def _staff(username: str = "backend-staff", **fields: Any) -> User:
    return get_user_model().objects.create_user(
        username, password=PASSWORD, is_staff=True, email=f"{username}@example.com", **fields
    )


def test_the_project_uses_it() -> None:
    assert settings.AUTHENTICATION_BACKENDS == ["project.auth_backends.UserBackend"]


def test_a_user_loads_with_every_field_as_djangos_backend_loads_it() -> None:
    user = _staff(first_name="Ada", last_name="Byron", is_superuser=True)
    get_user_model().objects.filter(pk=user.pk).update(last_login="2026-12-06T10:00:00Z")
    ours = UserBackend().get_user(str(user.pk))
    djangos = ModelBackend().get_user(str(user.pk))
    assert ours is not None and djangos is not None
    fields = [field.attname for field in get_user_model()._meta.concrete_fields]
    assert {f: getattr(ours, f) for f in fields} == {f: getattr(djangos, f) for f in fields}
    assert ours.last_login is not None and ours.last_login.tzinfo is not None
    assert not ours._state.adding and ours._state.db == "default"


@pytest.mark.parametrize("user_id", ["999999", "not-a-number", ""])
def test_an_unknown_or_malformed_id_is_nobody(user_id: str) -> None:
    assert UserBackend().get_user(user_id) is None


def test_an_inactive_user_is_nobody_as_with_djangos_backend() -> None:
    user = _staff(is_active=False)
    assert UserBackend().get_user(str(user.pk)) is None
    assert ModelBackend().get_user(str(user.pk)) is None


def test_signing_in_on_the_admin_form_and_permissions_work_through_it() -> None:
    user = _staff()
    user.user_permissions.add(Permission.objects.get(codename="view_job"))
    browser = Client()
    admin_index = reverse("admin:index")
    response = browser.post(
        reverse("admin:login"),
        {"username": user.username, "password": PASSWORD, "next": admin_index},
        follow=True,
    )
    assert response.redirect_chain == [(admin_index, 302)] and response.status_code == 200
    signed_in = response.wsgi_request.user
    assert signed_in == user and signed_in.has_perm("workers.view_job")
    assert not signed_in.has_perm("workers.run_diagnostic")
    wrong = Client().post(reverse("admin:login"), {"username": user.username, "password": "no"})
    assert wrong.status_code == 200 and not wrong.wsgi_request.user.is_authenticated


def test_a_deactivation_or_password_change_ends_a_live_session_on_the_next_request() -> None:
    admin_index = reverse("admin:index")
    for change in ("deactivate", "password"):
        user = _staff(f"backend-{change}")
        browser = Client()
        browser.force_login(user)
        assert browser.get(admin_index).status_code == 200
        if change == "deactivate":
            user.is_active = False
        else:
            user.set_password("pw-backend-2")
        user.save()
        response = browser.get(admin_index)
        assert response.status_code == 302 and reverse("admin:login") in response["Location"]
