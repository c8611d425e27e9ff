"""deploy/start, the image's entry point, runs the right command for each role and `exec`s
it. Run for real with fake programs first on PATH that record how they were called."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.conftest import ROOT

START = ROOT / "deploy" / "start"

RECORDER = f"""#!{sys.executable}
import json, os, sys
with open(os.environ["RECORD_TO"], "w") as record:
    json.dump({{"argv": sys.argv, "pid": os.getpid(), "cwd": os.getcwd(),
               "allowed_hosts": os.environ.get("DJANGO_ALLOWED_HOSTS")}}, record)
"""


@dataclass
class Run:
    returncode: int
    pid: int
    stderr: str
    record: dict[str, Any] | None


class Start:
    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        self.record = tmp_path / "record.json"
        for program in ("gunicorn", "celery", "python"):
            path = self.bin / program
            path.write_text(RECORDER)
            path.chmod(0o755)
        # Only what /bin/sh itself needs besides the fakes.
        self.env = {"PATH": f"{self.bin}:/usr/bin:/bin", "RECORD_TO": str(self.record)}

    def run(self, *args: str, **env: str) -> Run:
        process = subprocess.Popen(
            [str(START), *args],
            env={**self.env, **env},
            cwd="/",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, stderr = process.communicate(timeout=30)
        record = json.loads(self.record.read_text()) if self.record.exists() else None
        return Run(process.returncode, process.pid, stderr, record)

    def program(self, *args: str, **env: str) -> list[str]:
        """The argv the role ran, after checking it replaced the script (same pid)."""
        run = self.run(*args, **env)
        assert run.returncode == 0, run.stderr
        assert run.record is not None, "nothing was run"
        assert run.record["pid"] == run.pid, "the start script must exec, not fork"
        assert run.record["cwd"] == str(ROOT)
        return [Path(run.record["argv"][0]).name, *run.record["argv"][1:]]


@pytest.fixture
def start(tmp_path: Path) -> Start:
    return Start(tmp_path)


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_web_execs_gunicorn_on_the_wsgi_app_with_threads(start: Start) -> None:
    argv = start.program("web", WEB_CONCURRENCY="3")
    assert argv[:2] == ["gunicorn", "project.wsgi:application"]
    assert option(argv, "--bind") == "0.0.0.0:8000"
    assert option(argv, "--workers") == "3"
    assert option(argv, "--worker-class") == "gthread"
    # Longer than the load balancer's 60 s idle timeout, so it never reuses a closed socket.
    assert int(option(argv, "--keep-alive")) > 60


def test_web_never_migrates(start: Start) -> None:
    assert "migrate" not in start.program("web")


def test_worker_execs_celery_on_the_given_queues(start: Start) -> None:
    argv = start.program("worker", "default,media", CELERY_WORKER_CONCURRENCY="4")
    assert argv[:4] == ["celery", "-A", "workers", "worker"]
    assert option(argv, "--queues") == "default,media"
    assert option(argv, "--concurrency") == "4"


def test_two_workers_started_on_one_machine_get_names_of_their_own(start: Start) -> None:
    # Outside a container each worker's name carries its process id (the shell execs
    # celery, which keeps it): two workers of one queue never share a heartbeat row.
    names = []
    for _ in range(2):
        run = start.run("worker", "default,media")
        assert run.record is not None and run.record["pid"] == run.pid
        names.append(option(run.record["argv"], "--hostname"))
        assert names[-1] == f"default+media-{run.pid}@%h"
    assert names[0] != names[1]


def test_a_worker_name_can_be_set(start: Start) -> None:
    argv = start.program("worker", "infra", WORKER_NAME="infra-a@%h")
    assert option(argv, "--hostname") == "infra-a@%h"


def test_beat_execs_celery_beat_without_a_pid_file(start: Start) -> None:
    argv = start.program("beat")
    assert argv[:4] == ["celery", "-A", "workers", "beat"]
    assert "--pidfile=" in argv


def test_flower_execs_with_any_own_login_left_in_the_environment(start: Start) -> None:
    argv = start.program("flower", FLOWER_BASIC_AUTH="ops:correct-horse")
    assert argv[:3] == ["python", "-m", "workers.flower"]
    assert "--address=0.0.0.0" in argv
    assert not any("correct-horse" in arg for arg in argv)


def test_flower_starts_without_a_login_of_its_own_to_sign_in_django_accounts(
    start: Start,
) -> None:
    argv = start.program("flower")
    assert argv[:3] == ["python", "-m", "workers.flower"]


def test_release_runs_the_release_command_once_and_waits(start: Start) -> None:
    argv = start.program("release", "v42")
    assert argv == ["python", "manage.py", "release", "--version", "v42", "--wait"]


def test_release_takes_its_version_from_the_environment(start: Start) -> None:
    argv = start.program("release", RELEASE_VERSION="abc123")
    assert argv == ["python", "manage.py", "release", "--version", "abc123", "--wait"]


def test_release_without_a_version_fails_before_running_anything(start: Start) -> None:
    run = start.run("release")
    assert run.returncode != 0 and run.record is None


def test_manage_passes_any_management_command_through(start: Start) -> None:
    argv = start.program("manage", "sqs_queues")
    assert argv == ["python", "manage.py", "sqs_queues"]


@pytest.mark.parametrize("args", [[], ["bogus"], ["worker"], ["web", "extra"]])
def test_unknown_roles_and_wrong_arguments_print_usage(start: Start, args: list[str]) -> None:
    run = start.run(*args)
    assert run.returncode == 64
    assert "start worker QUEUE" in run.stderr
    assert run.record is None


@pytest.fixture
def task_metadata() -> Iterator[str]:
    """A task metadata endpoint (v4) answering like ECS does for an awsvpc task."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(
                {
                    "Name": "app",
                    "Networks": [{"NetworkMode": "awsvpc", "IPv4Addresses": ["10.0.3.7"]}],
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v4/container-id"
    finally:
        server.shutdown()
        server.server_close()


def test_on_ecs_web_accepts_the_tasks_own_ip_for_the_load_balancer_health_check(
    start: Start, task_metadata: str
) -> None:
    # The real interpreter reads the metadata; gunicorn stays the recorder.
    (start.bin / "python").unlink()
    (start.bin / "python").symlink_to(sys.executable)
    run = start.run(
        "web",
        ECS_CONTAINER_METADATA_URI_V4=task_metadata,
        DJANGO_ALLOWED_HOSTS="ops.example.com",
    )
    assert run.returncode == 0, run.stderr
    assert run.record is not None and run.record["pid"] == run.pid
    assert run.record["allowed_hosts"] == "ops.example.com,10.0.3.7"


def test_off_ecs_the_allowed_hosts_are_left_alone(start: Start) -> None:
    run = start.run("web", DJANGO_ALLOWED_HOSTS="localhost")
    assert run.record is not None and run.record["allowed_hosts"] == "localhost"
