"""`make test`: the whole suite as pytest sessions in four lanes side by side.

Tests marked `waits` spend most of their time waiting on real clocks: an SQS visibility
timeout running out, a broker outage, a dead worker's heartbeat going stale, a terraform
run declared lost. On two cores they use little CPU, so they run in lanes of their own
beside the rest: their waiting overlaps the other tests' work instead of adding to it. In
one lane they became the long pole (11.5 minutes, the other lanes done at 10), so they are
cut in two by directory (`waits-1`: tests/workers; `waits-2`: the rest). The browser tests
(marked `browser`) have a lane too. The rest is cut in three by directory: `rest-1` runs
from the start in a lane of its own, `rest-2` in the browser lane once the browser session
is done, `rest-3` in waits-2's lane once that is done. Even the rest waits on workers and
servers more than it computes (one session of it alone keeps a load average below 1 on
two cores); in one session it was the long pole (10.4 of 10.5 minutes, the waits lane
done at 6.6). Four sessions of the rest at once were tried and overloaded the machine:
here at most three run at once, for the few minutes rest-3 takes.

Each session has its own test database (DATABASE_URL's name plus `_waits1`, `_waits2`,
`_browser`, `_rest1`, `_rest2`, `_rest3`), and, as every session does (tests/environment.py), its
own SQS queue names, endpoint, worker processes, terraform directories and state bucket,
so they cannot collide.

    python tests/run_sessions.py            # every session; exit status 0 only if all pass
    python tests/run_sessions.py ARGS...    # one ordinary pytest session with ARGS
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/opsqueue"
REST = "not waits and not browser"
# Directories whose tests (those of `REST`) the rest-1 and rest-3 sessions run; rest-2 runs
# the rest of the tree, so a new directory is never left out. Chosen by the time each took
# in a session of its own (workers 282 s, terraform 112, project 88, courses 49, rds 36 of
# the rest's ~620) and by when each lane is free: rest-3 follows waits-2, done at under 4
# minutes, and rest-2 the browser session, done at 7. With project in rest-1 and rds in
# rest-2, rest-1 and rest-2 ended at 10.6 and 10.1 minutes and rest-3 at 6.7; as below,
# the three end at 9.3-9.9, 10.0-10.2 and 9.2-9.6.
REST_FIRST = ("tests/workers", "tests/infra_tasks/rds")
REST_THIRD = ("tests/courses", "tests/infra_tasks/releases", "tests/deploy", "tests/project")
# Likewise for the tests that wait: tests/workers' took 6 of their 11.5 minutes.
WAITS_FIRST = ("tests/workers",)


@dataclass(frozen=True)
class Session:
    name: str
    args: tuple[str, ...]

    @property
    def database_suffix(self) -> str:
        return self.name.replace("-", "")


# Each lane runs its sessions one after another; the lanes run side by side.
LANES: tuple[tuple[Session, ...], ...] = (
    (Session("waits-1", ("-m", "waits", *WAITS_FIRST)),),
    (
        Session("waits-2", ("-m", "waits", *(f"--ignore={path}" for path in WAITS_FIRST))),
        Session("rest-3", ("-m", REST, *REST_THIRD)),
    ),
    (
        Session("browser", ("-m", "browser and not waits")),
        Session(
            "rest-2",
            ("-m", REST, *(f"--ignore={path}" for path in (*REST_FIRST, *REST_THIRD))),
        ),
    ),
    (Session("rest-1", ("-m", REST, *REST_FIRST)),),
)
# pytest's status when a session selects no test: not a failure of the suite.
NO_TESTS_COLLECTED = 5
# Per-session values that tests/environment.py derives from the process id when unset: an
# inherited value would make the sessions share queues, directories or a bucket.
PER_SESSION = (
    "SQS_QUEUE_PREFIX",
    "TERRAFORM_ROOT",
    "TERRAFORM_WORK_DIR",
    "TERRAFORM_PLUGIN_CACHE_DIR",
    "TERRAFORM_STATE_BUCKET",
    "DJANGO_MEDIA_ROOT",
    "DJANGO_EMAIL_FILE_PATH",
)


def session_database_url(base: str, session: str) -> str:
    """`base` with `_<session>` appended to the database name (query string kept)."""
    address, _, query = base.partition("?")
    return f"{address}_{session}" + (f"?{query}" if query else "")


def main(argv: list[str]) -> int:
    pytest = [sys.executable, "-m", "pytest"]
    if argv:
        return subprocess.call([*pytest, *argv], cwd=ROOT)
    base = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    logs = Path(tempfile.mkdtemp(prefix="opsqueue-sessions-"))
    started = time.monotonic()

    def start(session: Session) -> tuple[subprocess.Popen[bytes], Path]:
        log = logs / f"{session.name}.log"
        env = {key: value for key, value in os.environ.items() if key not in PER_SESSION}
        env["DATABASE_URL"] = session_database_url(base, session.database_suffix)
        with log.open("wb") as output:
            process = subprocess.Popen(
                [*pytest, *session.args, "--durations=15"],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        minutes = (time.monotonic() - started) / 60
        print(f"session {session.name!r} started at {minutes:.1f} min; output in {log}")
        return process, log

    waiting = [list(lane) for lane in LANES]
    running = {}
    for index, lane in enumerate(waiting):
        first = lane.pop(0)
        running[index] = (first, *start(first))
    statuses: dict[str, int] = {}
    while running:
        time.sleep(1)
        for index, (session, process, log) in list(running.items()):
            if process.poll() is None:
                continue
            statuses[session.name] = process.returncode
            minutes = (time.monotonic() - started) / 60
            print(
                f"\n===== session {session.name!r}: exit {process.returncode}"
                f" after {minutes:.1f} min"
            )
            sys.stdout.write(log.read_text(errors="replace"))
            sys.stdout.flush()
            del running[index]
            if waiting[index]:
                following = waiting[index].pop(0)
                running[index] = (following, *start(following))
    failed = {name: s for name, s in statuses.items() if s not in (0, NO_TESTS_COLLECTED)}
    verdict = "failed: " + ", ".join(failed) if failed else "all passed"
    minutes = (time.monotonic() - started) / 60
    print(f"\nsessions: {statuses}; {verdict} in {minutes:.1f} min")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
