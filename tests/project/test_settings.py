"""Production settings: no secret defaults, and `check --deploy` is clean."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from workers.devstack import BASE_DIR


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_secret_key_is_required_when_debug_is_off() -> None:
    result = manage("check", DJANGO_DEBUG="false")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_production_settings_pass_check_deploy() -> None:
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="x" * 20 + "-long-random-production-like-secret-" + "y" * 20,
        DJANGO_ALLOWED_HOSTS="ops.example.com",
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_queues_are_predefined_when_a_queue_url_base_is_set() -> None:
    code = (
        "from workers.celery import app; "
        "print(sorted(app.conf.broker_transport_options['predefined_queues']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={
            **os.environ,
            "SQS_QUEUE_URL_BASE": "https://sqs.eu-west-1.amazonaws.com/123456789012",
            "SQS_QUEUE_PREFIX": "prod-",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(
        ["prod-default", "prod-infra", "prod-media", "prod-release"]
    )


def test_a_login_in_flower_url_is_dropped_because_every_staff_member_sees_the_link() -> None:
    from project.settings import flower_url_setting

    assert flower_url_setting("https://ops:s3cret@flower.example.com:5555/flower/") == (
        "https://flower.example.com:5555/flower/"
    )
    assert flower_url_setting("https://token@[::1]:5555/") == "https://[::1]:5555/"
    assert flower_url_setting("https://flower.example.com/") == "https://flower.example.com/"
    assert flower_url_setting("") == ""


def test_a_database_that_never_answers_fails_a_connection_in_seconds_not_minutes() -> None:
    # A listener that takes the connection and says nothing, as a black-holed failover does:
    # libpq waited without end, holding a request, a heartbeat or a job.
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        port = silent.getsockname()[1]
        code = "from django.db import connection; connection.ensure_connection()"
        result = manage(
            "shell",
            "-c",
            code,
            DJANGO_DEBUG="true",
            DATABASE_URL=f"postgres://postgres@127.0.0.1:{port}/nowhere",
            DATABASE_CONNECT_TIMEOUT="2",
        )
    finally:
        silent.close()
    assert result.returncode != 0
    assert "OperationalError" in result.stderr and "timeout" in result.stderr, result.stderr
