"""CPU of the two reads every signed-in request makes: its session, by Django's database
store and by project/sessions.py (the same row, read by one fixed statement), and its user,
by Django's ModelBackend and by project/auth_backends.py (likewise).

Every signed-in request pays for these, whatever it does. Figures: microseconds of this
process's CPU per read (medians of 5 rounds of 2,000), against PostgreSQL.

    .venv/bin/python bench/sessions.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from _setup import django_on_postgres, table

ROUNDS = 5
READS = 2_000


def cpu_us_per_call(call: Callable[[], object]) -> float:
    started = time.process_time()
    for _ in range(READS):
        call()
    return (time.process_time() - started) / READS * 1e6


def main() -> None:
    django_on_postgres("opsqueue_bench_sessions")
    from django.contrib.auth import get_user_model
    from django.contrib.auth.backends import ModelBackend
    from django.contrib.sessions.backends import db

    from project.auth_backends import UserBackend
    from project.sessions import SessionStore

    user, _ = get_user_model().objects.get_or_create(username="bench-sessions")
    session = db.SessionStore()
    session["_auth_user_id"] = str(user.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session.create()
    key = session.session_key
    assert SessionStore(key).load() == db.SessionStore(key).load() != {}

    readers: dict[str, Callable[[], object]] = {
        "session, Django's database store": lambda: db.SessionStore(key).load(),
        "session, project.sessions": lambda: SessionStore(key).load(),
        "user, Django's ModelBackend": lambda: ModelBackend().get_user(str(user.pk)),
        "user, project.auth_backends": lambda: UserBackend().get_user(str(user.pk)),
    }
    figures: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(ROUNDS):  # alternating, so the machine's drift falls on all alike
        for name, read in readers.items():
            figures[name].append(cpu_us_per_call(read))
    print(
        table(
            ["read", "CPU us per read (median)", "rounds"],
            [
                [name, f"{statistics.median(f):.0f}", " ".join(f"{v:.0f}" for v in f)]
                for name, f in figures.items()
            ],
        )
    )

    def saved(django: str, ours: str) -> float:
        return statistics.median(figures[django]) - statistics.median(figures[ours])

    session_saved = saved("session, Django's database store", "session, project.sessions")
    user_saved = saved("user, Django's ModelBackend", "user, project.auth_backends")
    print(
        f"\nsaved per signed-in request: {session_saved + user_saved:.0f} us of web-process CPU "
        f"(session {session_saved:.0f}, user {user_saved:.0f})"
    )
    session.delete()


if __name__ == "__main__":
    main()
