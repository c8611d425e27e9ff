"""The session store reads what Django's database store reads, and nothing it would not."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends import db
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from project.sessions import SessionStore

pytestmark = pytest.mark.django_db


def _saved_session(**data: object) -> str:
    session = SessionStore()
    session.update(data)
    session.create()
    assert session.session_key is not None
    return session.session_key


def test_the_project_uses_it() -> None:
    assert settings.SESSION_ENGINE == "project.sessions"


def test_a_stored_session_loads_as_djangos_own_store_loads_it() -> None:
    key = _saved_session(colour="teal", count=3)
    assert SessionStore(key).load() == db.SessionStore(key).load() == {"colour": "teal", "count": 3}


def test_an_expired_session_loads_empty_and_its_key_is_forgotten() -> None:
    key = _saved_session(colour="teal")
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(1))
    store = SessionStore(key)
    assert store.load() == {}
    assert store.session_key is None


def test_an_unknown_key_loads_empty() -> None:
    store = SessionStore("x" * 32)
    assert store.load() == {} and store.session_key is None


def test_signing_out_ends_the_session_for_every_other_holder_of_its_cookie_at_once() -> None:
    user = get_user_model().objects.create_user(
        "sessions-staff", password="pw-sessions-1", is_staff=True, is_superuser=True
    )
    browser = Client()
    browser.force_login(user)
    admin_index = reverse("admin:index")
    assert browser.get(admin_index).status_code == 200
    # The same cookie in another client: a second tab, or a copy someone made of it.
    copy = Client()
    copy.cookies[settings.SESSION_COOKIE_NAME] = browser.cookies[settings.SESSION_COOKIE_NAME].value
    assert copy.get(admin_index).status_code == 200

    browser.post(reverse("admin:logout"))

    response = copy.get(admin_index)
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]
