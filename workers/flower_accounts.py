"""Flower's logins are the project's Django accounts, under the admin's permission rule.

Flower asks for a Basic login; here it is checked against Django's accounts: an active
staff user with `workers.view_operations` may look (the operations page's permission), and
only one who also holds `workers.control_workers` may use Flower's remote control (resize
a pool, revoke or terminate a task, shut a worker down). Everyone else is refused, and the
refusal of an action is recorded like the action would have been (workers/flower.py).

Checking a password costs a deliberate fraction of a second (Django's hasher), and Flower's
pages call its API every few seconds, so a login that passed is remembered for
CACHE_SECONDS: a removed permission, deactivated account or changed password takes effect
within that time. A failed login is never remembered.

A browser signed in to the admin is signed in to Flower too: Flower runs on the same host
(another port, or behind the same load balancer), so the browser sends it the admin's
session cookie, and that session is read as Django reads it (expiry, the password-change
hash). Without it a person who followed the Jobs home's link to Flower met a password
prompt, and a browser that shows none (headless, some embedded ones) a bare 401. A session
that passed is remembered for SESSION_CACHE_SECONDS, so logging out ends it there too.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

VIEW_PERMISSION = "workers.view_operations"
CONTROL_PERMISSION = "workers.control_workers"
CACHE_SECONDS = 60.0
SESSION_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class FlowerAccount:
    """A Django account whose password was right, and what it may do in Flower."""

    username: str
    can_look: bool
    can_act: bool

    def __str__(self) -> str:
        return self.username


_passed: dict[bytes, tuple[float, FlowerAccount]] = {}
_lock = threading.Lock()


def flower_account(username: str, password: str) -> FlowerAccount | None:
    """The account this Basic login signs in, or None if the login is wrong."""
    key = hashlib.sha256(f"{username}\0{password}".encode()).digest()
    return _remembered(key, CACHE_SECONDS, lambda: _checked(username, password))


def flower_session_account(session_key: str) -> FlowerAccount | None:
    """The account signed in by this admin session (its cookie), or None if it is unknown,
    expired or logged out, or its user's password changed since."""
    key = hashlib.sha256(f"session\0{session_key}".encode()).digest()
    return _remembered(key, SESSION_CACHE_SECONDS, lambda: _session_checked(session_key))


def _remembered(
    key: bytes, seconds: float, check: Callable[[], FlowerAccount | None]
) -> FlowerAccount | None:
    now = time.monotonic()
    with _lock:
        remembered = _passed.get(key)
    if remembered is not None and remembered[0] > now:
        return remembered[1]
    account = check()
    with _lock:
        if account is None:
            _passed.pop(key, None)
        else:
            _passed[key] = (now + seconds, account)
    return account


def flower_accounts_forget() -> None:
    """Forget every login that passed (tests; a deliberate revocation)."""
    with _lock:
        _passed.clear()


def _checked(username: str, password: str) -> FlowerAccount | None:
    from django.contrib.auth import authenticate

    user = authenticate(username=username, password=password)  # None for an inactive one
    return None if user is None else _account_of(user)


def _session_checked(session_key: str) -> FlowerAccount | None:
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import get_user
    from django.http import HttpRequest

    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(request)  # anonymous unless the session is live and its hash holds
    if not user.is_authenticated or not user.is_active:
        return None
    return _account_of(user)


def _account_of(user: Any) -> FlowerAccount:
    can_look = user.is_staff and user.has_perm(VIEW_PERMISSION)
    return FlowerAccount(
        user.get_username(), can_look, can_look and user.has_perm(CONTROL_PERMISSION)
    )
