"""Flower on the monitoring channel, always behind a login: `python -m workers.flower [options]`.

Over SQS alone Flower sees no worker and no task (no events, no remote control). Here its
broker is the monitoring channel (`CELERY_MONITOR_URL`), which the workers use for events
and remote control while their tasks stay on SQS; so revoke, terminate and pool grow/shrink
from Flower reach them. It refuses to start, saying why, without that channel or without
credentials (`FLOWER_BASIC_AUTH=user:password` or `--basic-auth`), and listens on loopback
unless an address is given (`--address` or `FLOWER_ADDRESS`). Other options go to Flower.

Flower serves `/metrics` (Prometheus: task names, worker host names) without asking for the
login; here it asks like every other page (`guard_metrics`). `/healthcheck` stays open: it
answers "OK" and nothing else.

Flower's "apply task" API would publish onto the monitoring channel, where no worker reads
tasks: start jobs from the admin instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from workers.errors import ApplicationError

NO_CHANNEL = (
    "Flower would see no workers: CELERY_MONITOR_URL is not set. With tasks on SQS, workers "
    "send events and answer remote control only over the monitoring channel (Redis); set "
    "CELERY_MONITOR_URL for the workers and for Flower."
)
NO_AUTH = (
    "Flower needs a login: set FLOWER_BASIC_AUTH=user:password (or pass --basic-auth); "
    "it never runs without one."
)


class LaunchRefused(ApplicationError):
    pass


def flower_argv(argv: Sequence[str], environ: dict[str, str], monitor_url: str) -> list[str]:
    """Flower's command line, checked: raises LaunchRefused with the reason."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--address")
    parser.add_argument("--basic-auth", "--basic_auth", dest="basic_auth", action="append")
    known, rest = parser.parse_known_args(list(argv))
    if not monitor_url:
        raise LaunchRefused(NO_CHANNEL)
    credentials = known.basic_auth or [
        c for c in environ.get("FLOWER_BASIC_AUTH", "").split(",") if c
    ]
    if not credentials or not all(_is_credential(c) for c in credentials):
        raise LaunchRefused(NO_AUTH)
    address = known.address or environ.get("FLOWER_ADDRESS") or "127.0.0.1"
    return [
        "flower",
        f"--address={address}",
        *(f"--basic-auth={c}" for c in known.basic_auth or []),
        *rest,
    ]


def _is_credential(value: str) -> bool:
    user, _, password = value.partition(":")
    return bool(user and password)


def guard_metrics() -> None:
    """Put Flower's metrics endpoint behind its login, like its other pages."""
    import tornado.web
    from flower.views import monitor

    if not getattr(monitor.Metrics.get, "opsqueue_guarded", False):
        guarded = tornado.web.authenticated(monitor.Metrics.get)
        guarded.opsqueue_guarded = True  # type: ignore[attr-defined]
        monitor.Metrics.get = guarded


def main(argv: Sequence[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from workers.celery import app
    from workers.monitoring import TRANSPORT_OPTIONS, monitor_url

    url = monitor_url()
    try:
        args = flower_argv(argv, dict(os.environ), url)
    except LaunchRefused as exc:
        print(f"workers.flower: {exc}", file=sys.stderr)
        return 2
    # The whole app talks to the channel in this process: Flower's inspect, revoke and pool
    # commands are broadcasts, and its event receiver reads the events the workers send.
    guard_metrics()
    app.conf.broker_url = url
    app.conf.broker_transport_options = dict(TRANSPORT_OPTIONS)
    app.start(argv=args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
