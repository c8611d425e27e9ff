"""Real servers for monitoring tests: a private redis-server and Flower on the channel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from base64 import b64encode
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.test import override_settings

from tests.support.servers import WorkerProcess, process_group_stop, wait_until
from workers.devstack import BASE_DIR, free_port, redis_reachable, wait_for_http


class RedisServer:
    """A throwaway redis-server on a free loopback port, never the shared one on 6379."""

    def __init__(self, log_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log_path = log_dir / f"redis-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        log = self._log_path.open("ab")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_until(lambda: redis_reachable(self.url), timeout=20, message="redis-server")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class FlowerProcess:
    """`python -m workers.flower` on a free port, read through its HTTP API with basic auth:
    with a login of its own (`user`/`password`), or, with `django_accounts`, none, so that
    it signs in the project's Django accounts."""

    user = "ops"
    password = "flower-test-password"

    def __init__(
        self, *, env: Mapping[str, str], log_dir: Path, django_accounts: bool = False
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"flower-{self.port}.log"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workers.flower",
                f"--port={self.port}",
                *([] if django_accounts else [f"--basic-auth={self.user}:{self.password}"]),
                "--inspect_timeout=5000",
            ],
            cwd=BASE_DIR,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for_http(f"{self.url}/healthcheck", timeout=60)

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        auth: bool = True,
        login: tuple[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Status and body (JSON when it parses) of a request with the login, another
        `login`, or none."""
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, data=b"" if method == "POST" else None
        )
        if auth:
            user, password = login or (self.user, self.password)
            token = b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
                try:
                    return response.status, json.loads(body) if body else None
                except ValueError:
                    return response.status, body.decode(errors="replace")  # a page
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def get(self, path: str) -> Any:
        status, body = self.request(path)
        assert status == 200, (status, body)
        return body

    def post(self, path: str) -> Any:
        status, body = self.request(path, method="POST")
        assert status == 200, (status, body)
        return body

    def stop(self) -> None:
        process_group_stop(self.process, 15)


# Every queue: a monitored worker runs any job, as a deployed one does.
MONITORED_QUEUES = ["default", "media", "infra", "release"]


def sqs_queues_named(prefix: str) -> None:
    """The project's SQS queues (and dead-letter queues) under `prefix`."""
    with override_settings(SQS_QUEUE_PREFIX=prefix):
        call_command("sqs_queues", stdout=open(os.devnull, "w"))  # noqa: SIM115


class Monitored:
    """A worker on SQS queues of its own (their `prefix`) and a private monitoring channel:
    the `monitored` fixture (tests/conftest.py)."""

    def __init__(self, prefix: str, redis: RedisServer, worker: WorkerProcess) -> None:
        self.prefix = prefix
        self.redis = redis
        self.worker = worker
