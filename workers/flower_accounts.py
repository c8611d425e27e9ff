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
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

VIEW_PERMISSION = "workers.view_operations"
CONTROL_PERMISSION = "workers.control_workers"
CACHE_SECONDS = 60.0


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
    now = time.monotonic()
    with _lock:
        remembered = _passed.get(key)
    if remembered is not None and remembered[0] > now:
        return remembered[1]
    account = _checked(username, password)
    with _lock:
        if account is None:
            _passed.pop(key, None)
        else:
            _passed[key] = (now + CACHE_SECONDS, account)
    return account


def flower_accounts_forget() -> None:
    """Forget every login that passed (tests; a deliberate revocation)."""
    with _lock:
        _passed.clear()


def _checked(username: str, password: str) -> FlowerAccount | None:
    from django.contrib.auth import authenticate

    user = authenticate(username=username, password=password)  # None for an inactive one
    if user is None:
        return None
    can_look = user.is_staff and user.has_perm(VIEW_PERMISSION)
    return FlowerAccount(
        user.get_username(), can_look, can_look and user.has_perm(CONTROL_PERMISSION)
    )
