"""Real servers for integration tests: the AWS-compatible endpoint and Celery workers.

Everything runs on loopback, on free ports, and is stopped by the fixture that started it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3

from workers.devstack import BASE_DIR, free_port, wait_for_http


def wait_until(
    predicate: Callable[[], object],
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str = "condition",
) -> object:
    """Poll `predicate` until it returns something truthy; fail with `message` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {message}")
        time.sleep(interval)


class AwsEndpoint:
    """moto_server from PyPI (as started by workers/local_aws.py): one process serving SQS,
    S3, RDS, ECS, SSM, Secrets Manager."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (log_dir / f"moto-{self.port}.log").open("ab")
        self.start()

    def start(self) -> None:
        """Start serving on this endpoint's port (again, after `halt`: with no state)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "workers.local_aws", "-H", "127.0.0.1", "-p", str(self.port)],
            cwd=BASE_DIR,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_http(f"{self.url}/moto-api/")

    def halt(self) -> None:
        """Stop serving, as an outage would; `start` brings it back on the same port."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP the endpoint: connections are still accepted (by the kernel) and never
        answered, as a hung process or a black-holed route looks to a client."""
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT a frozen endpoint; it answers what it was asked meanwhile."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGCONT)

    def client(self, service: str) -> Any:
        return boto3.client(  # type: ignore[call-overload]
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.thaw()  # a stopped process would not act on SIGTERM
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        self._log.close()


def aws_environment(endpoint_url: str, queue_prefix: str) -> dict[str, str]:
    """Environment that points boto3 and kombu at the local endpoint."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ENDPOINT_URL_SQS": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SQS_QUEUE_PREFIX": queue_prefix,
        # Long polls strand messages when a worker stops; tests poll fast instead.
        "SQS_WAIT_TIME_SECONDS": "0",
        "SQS_POLLING_INTERVAL": "0.1",
    }


def new_queue_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}-"


def watchdog_env(liveness_file: Path | str, exit_seconds: float) -> dict[str, str]:
    """A test worker's settings for being watched: beating every half second, its watchdog
    stopping it after `exit_seconds` of consumer silence and dating `liveness_file`."""
    return {
        "WORKER_HEARTBEAT_SECONDS": "0.5",
        "WORKER_CONSUMER_EXIT_SECONDS": str(exit_seconds),
        "WORKER_LIVENESS_FILE": str(liveness_file),
    }


def own_queues_create(
    endpoint: AwsEndpoint, prefix: str, queues: Iterable[str] = ("default",)
) -> None:
    """Create a test's own `<prefix><queue>` queues on `endpoint` (again after `halt` and
    `start`: a restarted moto_server has forgotten them, where SQS would keep them). Their
    120 s visibility timeout outlasts any outage a test plays, so a message is delivered
    again only when a test sends it again."""
    sqs = endpoint.client("sqs")
    for queue in queues:
        sqs.create_queue(QueueName=f"{prefix}{queue}", Attributes={"VisibilityTimeout": "120"})


@dataclass(frozen=True)
class ShortVisibilityQueue:
    """An infra queue of a test's own whose messages come back `seconds` after a worker
    stops extending them (instead of the production timeout), and the worker environment
    that uses it."""

    prefix: str
    url: str
    env: dict[str, str]


def short_visibility_queue(
    aws: AwsEndpoint, worker_env: dict[str, str], seconds: int
) -> ShortVisibilityQueue:
    prefix = new_queue_prefix()
    url = aws.client("sqs").create_queue(
        QueueName=f"{prefix}infra", Attributes={"VisibilityTimeout": str(seconds)}
    )["QueueUrl"]
    env = {
        **worker_env,
        "SQS_QUEUE_PREFIX": prefix,
        "SQS_VISIBILITY_TIMEOUT_SECONDS": str(seconds),
    }
    return ShortVisibilityQueue(prefix, url, env)


def process_group_stop(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process's group; SIGKILL it when it has not ended after `timeout`."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


class CeleryProcess:
    """A real `celery -A workers <command>` subprocess in its own process group, logging to
    `log_path`, started once its log says `ready_text`."""

    def __init__(
        self,
        command: list[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        what: str,
        ready_text: str,
    ) -> None:
        self.log_path = log_path
        self._what = what
        self._ready_text = ready_text
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", *command],
            cwd=BASE_DIR,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(self._ready, timeout=60, message=f"{what} to start")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"{self._what} exited early:\n{self.log_text()[-4000:]}")
        return self._ready_text in self.log_text()

    def stop(self, timeout: float = 20.0) -> None:
        process_group_stop(self.process, timeout)
        self._log.close()


class WorkerProcess(CeleryProcess):
    """A real `celery worker` subprocess on the given queues."""

    def __init__(
        self,
        *,
        env: Mapping[str, str],
        queues: Iterable[str],
        log_dir: Path,
        concurrency: int = 1,
        pool: str = "prefork",
        name: str | None = None,
        extra_args: Iterable[str] = (),
    ) -> None:
        self.name = name or f"test-{uuid.uuid4().hex[:6]}"
        super().__init__(
            [
                "worker",
                "-Q",
                ",".join(queues),
                "-c",
                str(concurrency),
                "-P",
                pool,
                "-n",
                f"{self.name}@%h",
                "--loglevel",
                "INFO",
                "--without-gossip",
                "--without-mingle",
                "--include",
                "tests.support.worker_hooks",
                *extra_args,
            ],
            env=env,
            log_path=log_dir / f"worker-{self.name}.log",
            what=f"worker {self.name}",
            ready_text=" ready.",
        )

    @property
    def hostname(self) -> str:
        return f"{self.name}@{os.uname().nodename}"

    def has_received(self) -> bool:
        """Its heartbeat row says its consumer received from SQS. A liveness check passes
        from the start, during the grace before the first receive: an outage begun then
        is one the consumer never proved it lived through."""
        from workers.models import WorkerHeartbeat

        return WorkerHeartbeat.objects.filter(
            hostname=self.hostname, last_receive_at__isnull=False
        ).exists()

    def pool_pids(self) -> list[int]:
        out = subprocess.run(
            ["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False
        ).stdout
        return [int(pid) for pid in out.split()]

    def kill(self) -> None:
        """SIGKILL the whole worker, pool included: nothing gets to acknowledge anything."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._log.close()


class SharedWorkerReplaced(UserWarning):
    """The session's shared worker had exited or failed its health check, and a fresh one
    took its place."""


class SharedWorker:
    """One real worker consuming every queue, shared by the tests of a session, and kept as
    its supervisor keeps a deployed one (`make run`, ECS): before each test that needs it, a
    worker that exited (its watchdog stops it when its consumer stalls) or whose health check
    fails (its consumer silent, the process too stuck to stop itself) is replaced, and the
    run warns with the end of its log. Unreplaced, every later test of the session waited on
    a worker that was gone."""

    def __init__(self, env: dict[str, str], run_dir: Path, *, exit_seconds: float = 60.0) -> None:
        # Sooner than a deployed worker's 180 s: a stall costs the tests of a minute, not three.
        self._env = {**env, "WORKER_CONSUMER_EXIT_SECONDS": str(exit_seconds)}
        # The health check allows half as long again, for the worker to stop itself first.
        self._healthy_within = exit_seconds * 1.5
        self._run_dir = run_dir
        self.process = self._start()

    def _start(self) -> WorkerProcess:
        liveness = self._run_dir / f"shared-worker-{uuid.uuid4().hex[:6]}.alive"
        self.liveness_file = liveness
        return WorkerProcess(
            env={**self._env, "WORKER_LIVENESS_FILE": str(liveness)},
            queues=["default", "media", "infra", "release"],
            log_dir=self._run_dir,
            concurrency=2,
        )

    def running(self) -> WorkerProcess:
        """The worker, replaced first if it has exited or its health check fails."""
        from workers.liveness import consumer_alive

        code = self.process.process.poll()
        if code is not None:
            why = f"had exited with code {code}"
        elif not consumer_alive(str(self.liveness_file), self._healthy_within):
            why = "failed its health check (its consumer silent) and was killed"
            self.process.kill()
        else:
            return self.process
        tail = log_tail(self.process)
        self.process.stop()
        self.process = self._start()
        warnings.warn(
            SharedWorkerReplaced(
                f"the shared worker {why}; a fresh one replaced it. The end of its log:\n{tail}"
            ),
            stacklevel=2,
        )
        return self.process

    def stop(self) -> None:
        self.process.stop()


def log_tail(process: WorkerProcess, lines: int = 40) -> str:
    return "\n".join(process.log_text().splitlines()[-lines:])


class BeatProcess(CeleryProcess):
    """A real `celery beat` with the database scheduler, looking at its schedule every second."""

    def __init__(self, *, env: Mapping[str, str], log_dir: Path) -> None:
        super().__init__(
            ["beat", "--loglevel", "INFO", "--pidfile=", "--max-interval", "1"],
            env=env,
            log_path=log_dir / f"beat-{uuid.uuid4().hex[:6]}.log",
            what="beat",
            ready_text="beat: Starting...",
        )


class SqsFaults:
    """A loopback proxy in front of an endpoint that answers the SQS actions named in
    `failing` with HTTP 500 InternalError, as SQS does in a partial outage, and passes
    everything else through: point a worker's AWS_ENDPOINT_URL_SQS at `url`."""

    def __init__(self, target: AwsEndpoint) -> None:
        self.failing: set[str] = set()
        self.refused: Counter[str] = Counter()
        faults = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                # JSON protocol (boto3) names the action in a header, query protocol in the body.
                action = (self.headers.get("X-Amz-Target") or "").rsplit(".", 1)[-1]
                if not action and b"Action=" in body:
                    action = body.split(b"Action=", 1)[1].split(b"&", 1)[0].decode()
                if action in faults.failing:
                    faults.refused[action] += 1
                    self._answer(
                        500,
                        [("Content-Type", "application/x-amz-json-1.0")],
                        b'{"__type":"com.amazonaws.sqs#InternalError","message":"injected"}',
                    )
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                upstream.request(self.command, self.path, body, headers)
                response = upstream.getresponse()
                passed = [
                    (k, v)
                    for k, v in response.getheaders()
                    if k.lower() not in ("content-length", "transfer-encoding", "connection")
                ]
                self._answer(response.status, passed, response.read())
                upstream.close()

            do_GET = do_POST

            def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def queue_with_dead_letters(
    sqs: Any, prefix: str, queue: str, visibility: int = 60, max_receives: int = 5
) -> tuple[str, str]:
    """A queue named `prefix``queue` whose messages go to its dead-letter queue after
    `max_receives` receives, as `manage.py sqs_queues` makes them; (url, dead-letter url)."""
    dlq_url = sqs.create_queue(QueueName=f"{prefix}{queue}-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    url = sqs.create_queue(
        QueueName=f"{prefix}{queue}",
        Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receives)}
            ),
        },
    )["QueueUrl"]
    return url, dlq_url
