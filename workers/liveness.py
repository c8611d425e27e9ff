"""Container health check for a worker: `python -m workers.liveness`.

Healthy while WORKER_LIVENESS_FILE is younger than WORKER_CONSUMER_EXIT_SECONDS. The worker's
watchdog thread dates the file when the SQS consumer last received (workers/heartbeats.py),
so the check fails once the consumer has been silent that long, whether the threads beat on
(a consumer stuck on a hung SQS) or are frozen with the rest of the process; a database that
hangs does not stale it.
Deliberately without Django: the check runs every few seconds and must stay cheap.
"""

from __future__ import annotations

import os
import sys
import time


def consumer_alive(path: str, max_age_seconds: float) -> bool:
    try:
        age = time.time() - os.stat(path).st_mtime
    except OSError:
        return False
    return age < max_age_seconds


def main() -> int:
    path = os.environ.get("WORKER_LIVENESS_FILE", "")
    if not path:
        print("WORKER_LIVENESS_FILE is not set", file=sys.stderr)
        return 1
    max_age = float(os.environ.get("WORKER_CONSUMER_EXIT_SECONDS", "180"))
    if consumer_alive(path, max_age):
        return 0
    print(f"worker consumer silent: {path} older than {max_age:g}s or missing", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
