"""The whole local system in one command (`make run`): Ctrl-C stops all of it.

Starts, on loopback: the AWS-compatible endpoint (moto_server: SQS, S3, RDS, ECS, SSM,
Secrets Manager), the SQS queues, the terraform state bucket, migrations, a demo staff
account, the web server, Celery workers for every queue, beat and Flower. Every value has an
embedded default; any variable already in the environment (see .env.example) wins.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = BASE_DIR / "var"
DEMO_USERNAME = "demo"


def free_port(preferred: int | None = None) -> int:
    """The preferred port if it is free on loopback, otherwise any free one.

    Free as the servers bind it (SO_REUSEADDR, as runserver, moto and Flower do): the last
    run's connections waiting out TIME_WAIT after a Ctrl-C do not move the admin off its
    port; a server listening there does."""
    candidates = [preferred, 0] if preferred else [0]
    for candidate in candidates:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", candidate or 0))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port on 127.0.0.1")


def wait_for_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own http URL
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:g}s")


def redis_reachable(url: str) -> bool:
    host_port = url.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = host_port.partition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or 6379)), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Stack:
    env: dict[str, str]
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    # Processes started again when they exit (workers: one whose consumer stalled exits
    # on purpose, for its supervisor to start a fresh one), with how to start them.
    restartable: dict[str, tuple[list[str], Path | None]] = field(default_factory=dict)

    def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        log_file: Path | None = None,
        restart: bool = False,
    ) -> subprocess.Popen[bytes]:
        # Each child leads its own process group: Ctrl-C reaches only this runner, which
        # then stops every child (and whatever they started) in order.
        output = log_file.open("ab") if log_file else None
        process = subprocess.Popen(
            list(command),
            cwd=BASE_DIR,
            env=self.env,
            start_new_session=True,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
        )
        self.processes.append((name, process))
        if restart:
            self.restartable[name] = (list(command), log_file)
        return process

    def restart_exited(self) -> list[tuple[str, int]]:
        """Start again every restartable process that exited; return (name, exit code)s."""
        restarted = []
        for name, process in list(self.processes):
            code = process.poll()
            if code is None or name not in self.restartable:
                continue
            self.processes.remove((name, process))
            command, log_file = self.restartable[name]
            self.start(name, command, log_file=log_file, restart=True)
            restarted.append((name, code))
        return restarted

    def run(self, command: Sequence[str]) -> None:
        subprocess.run(list(command), cwd=BASE_DIR, env=self.env, check=True)

    def stop(self, grace: float = 10.0) -> None:
        for _name, process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name, process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"[devstack] {name} did not stop in time; killing it", flush=True)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def first_exited(self) -> tuple[str, int] | None:
        for name, process in self.processes:
            code = process.poll()
            if code is not None:
                return name, code
        return None


def stack_environment() -> tuple[dict[str, str], dict[str, int]]:
    env = dict(os.environ)
    ports = {
        "aws": free_port(int(env.get("DEVSTACK_AWS_PORT", "5000"))),
        "web": free_port(int(env.get("DEVSTACK_WEB_PORT", "8000"))),
        "flower": free_port(int(env.get("DEVSTACK_FLOWER_PORT", "5555"))),
    }
    aws = f"http://127.0.0.1:{ports['aws']}"
    defaults = {
        "DJANGO_DEBUG": "true",
        "AWS_ENDPOINT_URL": aws,
        "AWS_ENDPOINT_URL_SQS": aws,
        "AWS_ACCESS_KEY_ID": "devstack",
        "AWS_SECRET_ACCESS_KEY": "devstack",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "SQS_QUEUE_PREFIX": "opsqueue-dev-",
        # Short polls keep the local system snappy and stop cleanly.
        "SQS_WAIT_TIME_SECONDS": "1",
        "SQS_POLLING_INTERVAL": "0.2",
        "CELERY_MONITOR_URL": "redis://127.0.0.1:6379/15",
        "ECS_CLUSTER": "opsqueue-dev",
        # Terraform state and saved plans in the local endpoint's S3, as in production.
        "TERRAFORM_STATE_BUCKET": "opsqueue-dev-terraform",
        "PYTHONUNBUFFERED": "1",
    }
    for key, value in defaults.items():
        env.setdefault(key, value)
    # The local endpoint is in-memory and new each run, so fixed endpoints never leak.
    env["AWS_ENDPOINT_URL"] = env["AWS_ENDPOINT_URL_SQS"] = aws
    if not redis_reachable(env["CELERY_MONITOR_URL"]):
        print(
            "[devstack] no Redis on the monitoring URL: workers run without monitoring", flush=True
        )
        env.pop("CELERY_MONITOR_URL")
    else:
        env.setdefault("FLOWER_URL", f"http://127.0.0.1:{ports['flower']}/")
    return env, ports


def main(argv: Sequence[str] = ()) -> int:
    STATE_DIR.mkdir(exist_ok=True)
    env, ports = stack_environment()
    python = sys.executable
    manage = [python, "manage.py"]
    celery = [python, "-m", "celery", "-A", "workers"]
    password = env.get("DEVSTACK_PASSWORD") or secrets.token_urlsafe(12)
    stack = Stack(env=env)

    stopping = False
    settling: subprocess.Popen[bytes] | None = None

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        # The endpoint logs every request; that goes to a file, not the terminal.
        stack.start(
            "aws",
            [python, "-m", "workers.local_aws", "-H", "127.0.0.1", "-p", str(ports["aws"])],
            log_file=STATE_DIR / "aws-endpoint.log",
        )
        wait_for_http(f"{env['AWS_ENDPOINT_URL']}/moto-api/")
        stack.run([*manage, "sqs_queues"])
        stack.run([*manage, "terraform_state_bucket"])
        stack.run([*manage, "devstack_setup", "--username", DEMO_USERNAME, "--password", password])
        stack.start(
            "worker",
            [
                *celery,
                "worker",
                "-Q",
                "default,media,release",
                "-c",
                "2",
                "-n",
                "main@%h",
                "--loglevel",
                "INFO",
            ],
            restart=True,
        )
        stack.start(
            "worker-infra",
            [*celery, "worker", "-Q", "infra", "-c", "2", "-n", "infra@%h", "--loglevel", "INFO"],
            restart=True,
        )
        # Beat and Flower are restarted too, as ECS or compose restart them: beat exits when
        # its database connection drops while it starts, and either one gone stopped the stack.
        stack.start("beat", [*celery, "beat", "--loglevel", "INFO", "--pidfile", ""], restart=True)
        # The admin answers only once a worker consumes every queue: opened earlier, the Jobs
        # home and the demo jobs' pages would warn that no worker takes them (a false alarm).
        waiting = subprocess.Popen([*manage, "devstack_workers_ready"], cwd=BASE_DIR, env=env)
        while waiting.poll() is None and not stopping and not stack.first_exited():
            time.sleep(0.2)
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()
        if stopping:
            return 0
        if waiting.returncode:
            print("[devstack] a queue has no consuming worker yet; starting anyway", flush=True)
        stack.start("web", [*manage, "runserver", "--noreload", f"127.0.0.1:{ports['web']}"])
        if "CELERY_MONITOR_URL" in env:
            stack.start(
                "flower",
                [
                    python,
                    "-m",
                    "workers.flower",
                    "--address=127.0.0.1",
                    f"--port={ports['flower']}",
                    # No login of its own: the admin's accounts sign in (the demo one too).
                ],
                restart=True,
            )
            flower = f"http://127.0.0.1:{ports['flower']}/"
        else:
            flower = "not started: no monitoring channel (Redis), so it would see no workers"
        wait_for_http(f"http://127.0.0.1:{ports['web']}/healthz/")
        banner = (
            f"  admin        http://127.0.0.1:{ports['web']}/admin/\n"
            f"  flower       {flower}\n"
            f"  AWS endpoint {env['AWS_ENDPOINT_URL']}\n"
            f"  login        {DEMO_USERNAME} / {password}\n"
        )
        print(f"\n  opsqueue is running (Ctrl-C stops everything)\n{banner}", flush=True)
        # The workers' start-up and the demo's first jobs (three of them fail on purpose, with
        # their tracebacks) push that off the screen: once they are done, say it again, last.
        settling = subprocess.Popen([*manage, "devstack_settled"], cwd=BASE_DIR, env=env)
        while not stopping:
            if settling is not None and settling.poll() is not None:
                state = (
                    "the demo's first jobs have run (the DiagnosticFailure tracebacks above "
                    "are its failing ones, on purpose)"
                    if settling.returncode == 0
                    else "the demo's first jobs are still running"
                )
                print(f"\n  opsqueue is ready: {state}\n{banner}", flush=True)
                settling = None
            for name, code in stack.restart_exited():
                print(f"[devstack] {name} exited with {code}; starting a fresh one", flush=True)
            exited = stack.first_exited()
            if exited:
                print(f"[devstack] {exited[0]} exited with {exited[1]}; stopping", flush=True)
                return 1
            time.sleep(0.5)
        return 0
    finally:
        print("[devstack] stopping…", flush=True)
        if settling is not None:
            settling.kill()
        stack.stop()


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
