"""`make run`: the whole local system comes up on embedded defaults and Ctrl-C stops all of it."""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import closing
from pathlib import Path

from tests.support.servers import wait_until
from workers.devstack import BASE_DIR, free_port
from workers.queues import QUEUES


def test_dev_stack_starts_everything_and_ctrl_c_stops_it_all(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "SQS_", "DATABASE_URL", "DJANGO_", "CELERY_"))
    }
    env.update(
        {
            # Its own SQLite file and ports: the zero-setup defaults, away from everything else.
            "DATABASE_URL": f"sqlite:///{tmp_path / 'dev.sqlite3'}",
            "DEVSTACK_WEB_PORT": str(free_port()),
            "DEVSTACK_FLOWER_PORT": str(free_port()),
            "DEVSTACK_AWS_PORT": str(free_port()),
            "DEVSTACK_PASSWORD": "pw-devstack-test",
        }
    )
    log_path = tmp_path / "devstack.log"
    with log_path.open("wb") as log:
        stack = subprocess.Popen(
            [sys.executable, "-m", "workers.devstack"],
            cwd=BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            # The admin answers only once a worker consumes every queue: opened earlier,
            # the Jobs home would warn about the demo's first jobs that no worker takes them.
            wait_until(
                lambda: _status(f"http://127.0.0.1:{env['DEVSTACK_WEB_PORT']}/healthz/", "") == 200,
                timeout=240,
                interval=0.02,
                message="the dev stack's web server to answer",
            )
            assert _queues_consumed(tmp_path / "dev.sqlite3") >= set(QUEUES)
            banner = wait_until(
                lambda: re.search(r"admin\s+(http://\S+)/admin/", log_path.read_text()),
                timeout=240,
                message="the dev stack to print its banner",
            )
            text = log_path.read_text()
            assert "login        demo / pw-devstack-test" in text
            # The operations page has a dead letter to redrive or discard.
            assert "demo dead letter in the default queue's dead-letter queue" in text
            base = banner.group(1)  # type: ignore[attr-defined]
            with urllib.request.urlopen(f"{base}/healthz/", timeout=10) as response:
                assert response.status == 200
            flower = re.search(r"flower\s+(http://\S+)/", text)
            assert flower is not None
            # Flower signs in the admin's accounts: the demo login opens it.
            wait_until(
                lambda: _status(f"{flower.group(1)}/api/workers", "demo:pw-devstack-test") == 200,
                timeout=60,
                message="Flower to let the demo login in",
            )
            # The demo's job through Django's Tasks API runs on the stack's worker.
            wait_until(
                lambda: re.search(
                    r"Task courses\.tasks\.course_outline_report\[\S+\] succeeded",
                    log_path.read_text(),
                ),
                timeout=120,
                message="the demo outline report (a Django task) to succeed",
            )
            # Once the demo's first jobs are done the login is said again, below their output.
            wait_until(
                lambda: "opsqueue is ready: the demo's first jobs have run" in log_path.read_text(),
                timeout=180,
                message="the dev stack to say it is ready",
            )
            text = log_path.read_text()
            last_login = text.rindex("login        demo / pw-devstack-test")
            assert last_login > text.rindex("opsqueue is ready")
            assert "DiagnosticFailure" in text[: text.rindex("opsqueue is ready")]
            # Beat and Flower killed are started again, as the workers are; the stack stays up.
            for name, marker in (("beat", " beat "), ("flower", "workers.flower")):
                [killed] = [pid for pid in _descendants(stack.pid) if marker in _cmdline(pid)]
                os.kill(killed, signal.SIGKILL)
                said = f"[devstack] {name} exited with -9; starting a fresh one"
                wait_until(
                    functools.partial(_log_says, log_path, said),
                    timeout=30,
                    message=f"the dev stack to start {name} again",
                )
            assert stack.poll() is None
            wait_until(
                lambda: _status(f"{flower.group(1)}/api/workers", "demo:pw-devstack-test") == 200,
                timeout=60,
                message="the new Flower to answer",
            )
            children = _descendants(stack.pid)
            assert len(children) >= 6  # endpoint, web, two workers, beat, Flower (+ pools)
            assert sum(" beat " in _cmdline(pid) for pid in children) == 1

            # Ctrl-C reaches the runner (the terminal's foreground process).
            stack.send_signal(signal.SIGINT)
            assert stack.wait(timeout=60) == 0
            wait_until(
                lambda: not any(_alive(pid) for pid in children),
                timeout=30,
                message="every child process to exit",
            )
        finally:
            if stack.poll() is None:
                # A failed check: Ctrl-C first, so the runner stops the children it started
                # in sessions of their own (web, Flower), which a signal to its group misses.
                stack.send_signal(signal.SIGINT)
                try:
                    stack.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(stack.pid, signal.SIGKILL)
                    stack.wait()


def _status(url: str, login: str) -> int | None:
    """The status of a GET with a Basic `login`; None while nothing listens."""
    request = urllib.request.Request(url)
    request.add_header("Authorization", f"Basic {base64.b64encode(login.encode()).decode()}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _queues_consumed(database: Path) -> set[str]:
    """The queues of the workers whose heartbeat row the dev stack's database holds."""
    with closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT queues FROM workers_workerheartbeat").fetchall()
    return {queue for (queues,) in rows for queue in json.loads(queues)}


def _log_says(log_path: Path, text: str) -> bool:
    return text in log_path.read_text()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    children = [int(p) for p in out.split()]
    return children + [d for child in children for d in _descendants(child)]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; it only waits for its parent to read its status.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_the_runner_starts_a_fresh_worker_when_one_exits(tmp_path: Path) -> None:
    from workers.devstack import Stack

    stack = Stack(env=dict(os.environ))
    marker = tmp_path / "starts"
    # Counts its starts, then exits as a worker whose consumer stalled does.
    command = [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x'); raise SystemExit(3)"]
    try:
        stack.start("worker", command, restart=True)
        stack.start("beat", [sys.executable, "-c", "import time; time.sleep(60)"])
        wait_until(lambda: stack.processes[0][1].poll() is not None, message="first exit")
        assert stack.restart_exited() == [("worker", 3)]
        wait_until(lambda: marker.read_text() == "xx", message="a second start")
        assert stack.first_exited() in (None, ("worker", 3))
        assert [name for name, _ in stack.processes].count("worker") == 1
    finally:
        stack.stop(grace=2)


def test_a_preferred_port_whose_server_just_stopped_is_taken_again_and_a_busy_one_is_not() -> None:
    """Ctrl-C, then `make run` again: the web server's port still holds the last requests'
    connections (TIME_WAIT), which its next server may bind over, as runserver does; the
    admin stays at its address instead of moving to a random port."""
    import http.server
    import threading

    port = free_port()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), http.server.SimpleHTTPRequestHandler
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert free_port(port) != port, "a port a server listens on is busy"
        # The server closes each HTTP/1.0 connection first: its side waits in TIME_WAIT.
        for _ in range(3):
            assert _status(f"http://127.0.0.1:{port}/", "") in (200, 404)
    finally:
        server.shutdown()
        server.server_close()
    assert free_port(port) == port
