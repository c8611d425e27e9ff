"""`make test`: the whole suite as three pytest sessions side by side.

Tests marked `waits` spend most of their time waiting on real clocks: an SQS visibility
timeout running out, a broker outage, a dead worker's heartbeat going stale, a terraform
run declared lost. On two cores they use little CPU, so they run in a session of their own
beside the rest: their waiting overlaps the other tests' work instead of adding to it. The
browser tests (marked `browser`) wait on pages and workers as much as they compute, and
have a session of their own too: run with the rest, that session took half as long again
as the other (14.6 against 6.1 minutes, using about a third of the two cores).

Each session has its own test database (DATABASE_URL's name plus `_waits`, `_browser`,
`_rest`), and, as every session does (tests/environment.py), its own SQS queue names,
endpoint, worker processes, terraform directories and state bucket, so they cannot collide.

    python tests/run_sessions.py            # every session; exit status 0 only if all pass
    python tests/run_sessions.py ARGS...    # one ordinary pytest session with ARGS
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/opsqueue"
SESSIONS = {
    "waits": "waits",
    "browser": "browser and not waits",
    "rest": "not waits and not browser",
}
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
    running = {}
    for name, expression in SESSIONS.items():
        output = (logs / f"{name}.log").open("wb")
        env = {key: value for key, value in os.environ.items() if key not in PER_SESSION}
        env["DATABASE_URL"] = session_database_url(base, name)
        running[name] = (
            subprocess.Popen(
                [*pytest, "-m", expression, "--durations=15"],
                cwd=ROOT,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            ),
            output,
        )
        print(f"session {name!r} (-m {expression!r}) started; output in {output.name}")
    started = time.monotonic()
    statuses = {}
    while running:
        time.sleep(1)
        for name, (process, output) in list(running.items()):
            if process.poll() is None:
                continue
            output.close()
            statuses[name] = process.returncode
            del running[name]
            minutes = (time.monotonic() - started) / 60
            print(f"\n===== session {name!r}: exit {process.returncode} after {minutes:.1f} min")
            sys.stdout.write((logs / f"{name}.log").read_text(errors="replace"))
            sys.stdout.flush()
    failed = {name: s for name, s in statuses.items() if s not in (0, NO_TESTS_COLLECTED)}
    verdict = "failed: " + ", ".join(failed) if failed else "all passed"
    print(f"\nsessions: {statuses}; {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
