"""Flower on the monitoring channel, always behind a login: `python -m workers.flower [options]`.

Over SQS alone Flower sees no worker and no task (no events, no remote control). Here its
broker is the monitoring channel (`CELERY_MONITOR_URL`), which the workers use for events
and remote control while their tasks stay on SQS; so revoke, terminate and pool grow/shrink
from Flower reach them. It refuses to start, saying why, without that channel, and listens
on loopback unless an address is given (`--address` or `FLOWER_ADDRESS`). Other options go
to Flower.

Its logins are the project's Django accounts, under the admin's rule: staff with the
operations page's view permission look, `workers.control_workers` acts
(workers/flower_accounts.py). Given logins of its own (`FLOWER_BASIC_AUTH=user:password`,
`--basic-auth`, or OAuth with `--auth`), Flower uses those instead, as Flower does.

Flower serves `/metrics` (Prometheus: task names, worker host names) without asking for the
login; here it asks like every other page (`guard_metrics`). `/healthcheck` stays open: it
answers "OK" and nothing else.

Every use of Flower's remote control (shut a worker down, restart or resize its pool, add
or cancel a queue consumer, revoke or terminate a task, set a task's limits or rate, abort)
is recorded with the Flower login that asked, the target, the options, what Flower answered
and when (`FlowerAction`, read-only in the admin: Jobs → Flower actions), and logged.
Flower's "apply" and "send task" API would publish onto the monitoring channel, where no
worker reads tasks, and would start work outside `job_enqueue`: they answer 403 and say to
start jobs from the admin (the attempt is recorded too).

While the channel is unreachable Flower shows what it last saw as if it were live; here every
page says, at the top, that the channel is down and what that means (`channel_outage`), and
a request that needed the channel answers 503 saying so instead of a 500 and a traceback.
Its JSON API's reads and `/metrics` answer 503 with the reason as JSON (they answered the
last-seen data as if live, and Prometheus read counters frozen at the outage as a quiet
system); the feeds of its own tables answer as before, marked (`monitoring_channel`).

Flower's "Broker" page shows the SQS job queues and their sampled depths
(`sqs_broker_page`), not the channel's own Redis queues, which looked like them.
"""

from __future__ import annotations

import argparse
import base64
import functools
import inspect
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from workers.errors import ApplicationError
from workers.flower_accounts import FlowerAccount

logger = logging.getLogger(__name__)

NO_CHANNEL = (
    "Flower would see no workers: CELERY_MONITOR_URL is not set. With tasks on SQS, workers "
    "send events and answer remote control only over the monitoring channel (Redis); set "
    "CELERY_MONITOR_URL for the workers and for Flower."
)
START_REFUSED = (
    "Flower cannot start jobs here: it would publish onto the monitoring channel, where no "
    "worker reads tasks, and the job would not be recorded. Start jobs from the admin."
)
# Flower's handlers that act on workers or tasks (module, class) -> the action's name in the
# audit. tests/workers/test_monitoring.py checks that every POST handler of the installed
# Flower is here or in STARTS, so an upgrade that adds one is noticed.
AUDITED_ACTIONS = {
    ("flower.api.control", "WorkerShutDown"): "worker shut down",
    ("flower.api.control", "WorkerPoolRestart"): "worker pool restart",
    ("flower.api.control", "WorkerPoolGrow"): "worker pool grow",
    ("flower.api.control", "WorkerPoolShrink"): "worker pool shrink",
    ("flower.api.control", "WorkerPoolAutoscale"): "worker pool autoscale",
    ("flower.api.control", "WorkerQueueAddConsumer"): "worker queue add consumer",
    ("flower.api.control", "WorkerQueueCancelConsumer"): "worker queue cancel consumer",
    ("flower.api.control", "TaskRevoke"): "task revoke",
    ("flower.api.control", "TaskTimout"): "task time limits",
    ("flower.api.control", "TaskRateLimit"): "task rate limit",
    ("flower.api.tasks", "TaskAbort"): "task abort",
}
# Flower's API reads that do not come from the monitoring channel: a task's result is read
# from the result backend (the database), live whether the channel answers or not.
LIVE_API_READS = {("flower.api.tasks", "TaskResult")}
STARTS = {
    ("flower.api.tasks", "TaskApply"): "task apply",
    ("flower.api.tasks", "TaskAsyncApply"): "task async apply",
    ("flower.api.tasks", "TaskSend"): "task send",
}

NO_AUTH = (
    "Flower needs a login of the form user:password in FLOWER_BASIC_AUTH (or --basic-auth); "
    "leave both unset to sign in with the project's Django accounts."
)
LOOK_REFUSED = (
    "This account may not look at Flower: it needs staff status and the permission to view "
    "the operations page (workers.view_operations)."
)
ACT_REFUSED = (
    "This account may look but not act in Flower: controlling workers and tasks needs the "
    "permission workers.control_workers."
)


CHANNEL_DOWN = (
    "The monitoring channel ({url}) is unreachable from Flower ({cause}): the workers, tasks "
    "and queues shown here are as Flower last saw them, not live, and its actions reach no "
    "worker until the channel is back. Jobs still run over SQS; the operations page "
    "(/ops/operations/ on the admin site) shows the workers from their heartbeats."
)
FLOWER_TEMPLATES = Path(__file__).with_name("flower_templates")
# How often Flower's process asks whether the channel answers (off its event loop).
CHANNEL_CHECK_SECONDS = 5.0
# Flower's base.html: the banner goes at the top of every page's content.
PAGE_CONTENT = b'<main class="app-content" id="main-content">'


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
    if not all(_is_credential(c) for c in credentials):
        raise LaunchRefused(NO_AUTH)
    address = known.address or environ.get("FLOWER_ADDRESS") or "127.0.0.1"
    return [
        "flower",
        f"--address={address}",
        *(f"--basic-auth={c}" for c in known.basic_auth or []),
        *rest,
    ]


def uses_own_logins(argv: Sequence[str], environ: dict[str, str]) -> bool:
    """Whether Flower was given logins of its own (basic auth or OAuth) instead of the
    project's Django accounts."""
    return bool(environ.get("FLOWER_BASIC_AUTH") or environ.get("FLOWER_AUTH")) or any(
        arg.split("=", 1)[0] in ("--basic-auth", "--basic_auth", "--auth") for arg in argv
    )


def django_accounts() -> None:
    """Sign Flower's requests in with the project's Django accounts: a Basic login is
    checked against them, an account without the view permission gets 403, and Flower's own
    check (which lets everyone in when it has no logins of its own) never runs."""
    from urllib.parse import urlparse

    import tornado.web
    from asgiref.sync import sync_to_async
    from django.conf import settings
    from flower.api import BaseApiHandler
    from flower.views import BaseHandler

    from workers.flower_accounts import flower_account, flower_session_account

    if getattr(BaseHandler.prepare, "opsqueue_accounts", False):
        return

    async def prepare(self: Any) -> None:
        login = basic_login(self.request.headers.get("Authorization", ""))
        session_key = self.get_cookie(settings.SESSION_COOKIE_NAME)
        if login:
            account = await sync_to_async(flower_account)(*login)
        elif session_key:  # the browser is signed in to the admin
            account = await sync_to_async(flower_session_account)(session_key)
        else:
            account = None
        if account is None:
            return  # a page that needs the login asks for it: get_current_user, below
        self.current_user = account
        if not account.can_look:
            raise tornado.web.HTTPError(403, LOOK_REFUSED)

    def get_current_user(self: Any) -> None:
        # Reached only without a right login (prepare signs a right one in).
        raise tornado.web.HTTPError(401)

    def check_xsrf_cookie(self: Any) -> None:
        # Flower's own cross-site checks, which it skips when it has no logins of its own:
        # a browser would send the Basic login it remembers with a forged form's POST.
        site = self.request.headers.get("Sec-Fetch-Site")
        origin = self.request.headers.get("Origin")
        if site and site != "same-origin":
            raise tornado.web.HTTPError(403, "Cross-site request forbidden")
        if not site and origin and urlparse(origin).netloc != self.request.host:
            raise tornado.web.HTTPError(403, "Cross-origin request forbidden")

    prepare.opsqueue_accounts = True  # type: ignore[attr-defined]
    BaseHandler.prepare = prepare
    # The API's own prepare refuses every request when Flower has no logins of its own.
    BaseApiHandler.prepare = prepare
    BaseHandler.get_current_user = get_current_user
    BaseHandler.check_xsrf_cookie = check_xsrf_cookie


def basic_login(header: str) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic …` header, or None."""
    scheme, _, credentials = header.partition(" ")
    if scheme != "Basic":
        return None
    try:
        user, colon, password = base64.b64decode(credentials.strip()).decode().partition(":")
    except ValueError:
        return None
    return (user, password) if colon and user else None


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


def api_asks_for_login() -> None:
    """Make Flower's API answer a request without the login with a Basic challenge, as its
    pages do. A browser sends a login it was given only under the path it was asked for:
    signed in on /worker/<name>, its buttons' requests to /api/… went out without it, got a
    bare 401, and failed silently (an empty red notice, nothing done). Challenged in the same
    realm, the browser sends the login again."""
    from flower.api import BaseApiHandler

    write_error = BaseApiHandler.write_error
    if getattr(write_error, "opsqueue_challenges", False):
        return

    @functools.wraps(write_error)
    def challenging(self: Any, status_code: int, **kwargs: Any) -> None:
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Basic realm="flower"')
        write_error(self, status_code, **kwargs)

    challenging.opsqueue_challenges = True  # type: ignore[attr-defined]
    BaseApiHandler.write_error = challenging


class ChannelWatch:
    """Whether the monitoring channel answers, asked every CHANNEL_CHECK_SECONDS from a
    thread of its own: Flower's pages read the answer without waiting on Redis."""

    def __init__(self) -> None:
        self.cause: str | None = None

    def check(self) -> None:
        from workers.monitoring import monitoring_health
        from workers.service_health import error_kind

        try:
            monitoring_health.probe()
        except monitoring_health.errors as exc:
            if self.cause is None:
                logger.warning("flower: the monitoring channel is unreachable: %r", exc)
            self.cause = error_kind(f"{exc.__class__.__name__}: {exc}")
        else:
            if self.cause is not None:
                logger.warning("flower: the monitoring channel answers again")
            self.cause = None

    def start(self) -> None:
        import threading

        def run() -> None:
            while True:
                self.check()
                time.sleep(CHANNEL_CHECK_SECONDS)

        threading.Thread(target=run, name="channel-watch", daemon=True).start()

    def banner(self) -> str | None:
        """The page's warning while the channel is down, else None."""
        if self.cause is None:
            return None
        from workers.monitoring import monitor_url, redacted_url

        return CHANNEL_DOWN.format(url=redacted_url(monitor_url()), cause=self.cause)


channel_watch = ChannelWatch()


def channel_outage(watch: ChannelWatch = channel_watch) -> None:
    """Say on every Flower page when the monitoring channel is down; answer a request that
    needed it with 503 and why, not a 500 with a traceback (its queue lengths did)."""
    import html

    from flower.api import BaseApiHandler
    from flower.views import BaseHandler

    if getattr(BaseHandler.finish, "opsqueue_banner", False):
        return
    finish = BaseHandler.finish

    def finish_with_banner(self: Any, chunk: Any = None) -> Any:
        banner = watch.banner()
        if banner and isinstance(chunk, bytes) and PAGE_CONTENT in chunk:
            notice = (
                '<div class="alert alert-danger m-3" role="alert" id="monitoring-channel-down">'
                f"{html.escape(banner)}</div>"
            ).encode()
            chunk = chunk.replace(PAGE_CONTENT, PAGE_CONTENT + notice, 1)
        return finish(self, chunk)

    finish_with_banner.opsqueue_banner = True  # type: ignore[attr-defined]
    BaseHandler.finish = finish_with_banner

    def channel_error(exc_info: Any) -> bool:
        from kombu.exceptions import OperationalError
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        errors = (
            ConnectionError,
            TimeoutError,
            OperationalError,
            RedisConnectionError,
            RedisTimeoutError,
        )
        return bool(exc_info) and isinstance(exc_info[1], errors)

    for handler in (BaseHandler, BaseApiHandler):
        write_error = handler.write_error
        log_exception = handler.log_exception

        def unavailable(
            self: Any, status_code: int, *, _write_error: Any = write_error, **kwargs: Any
        ) -> None:
            if status_code == 500 and channel_error(kwargs.get("exc_info")):
                watch.cause = watch.cause or "not answering"
                self.clear()
                self.set_status(503)
                self.set_header("Content-Type", "text/plain; charset=UTF-8")
                self.finish(watch.banner() or "")
                return
            _write_error(self, status_code, **kwargs)

        def quiet(
            self: Any, typ: Any, value: Any, tb: Any, *, _log_exception: Any = log_exception
        ) -> None:
            if channel_error((typ, value, tb)):
                logger.warning(
                    "flower: %s %s: the monitoring channel: %r",
                    self.request.method,
                    self.request.uri,
                    value,
                )
                return
            _log_exception(self, typ, value, tb)

        handler.write_error = unavailable
        if handler is BaseHandler:  # the API's handlers inherit it
            handler.log_exception = quiet

    for api_handler in channel_api_reads():
        api_handler.get = _unavailable_while_down(api_handler.get, watch)
    # Its Prometheus counters too: served while the channel is down, they stood still at
    # the outage and read as a quiet system; a failed scrape says the target is blind.
    from flower.views.monitor import Metrics

    Metrics.get = _unavailable_while_down(Metrics.get, watch)
    # The dashboard's own tables read these; a 503 would empty them under the banner, so they
    # answer as before, with the marker a script can test.
    from flower.views.tasks import TasksDataTable
    from flower.views.workers import WorkersView

    for table in (WorkersView, TasksDataTable):
        table.write = _marked_while_down(table.write, watch)


def channel_api_reads() -> list[Any]:
    """Flower's API handlers whose GET answers from what it saw on the monitoring channel
    (every GET of the installed Flower's API but LIVE_API_READS)."""
    from flower.api import BaseApiHandler
    from flower.urls import handlers

    found = []
    for entry in handlers:
        handler = entry.handler_class if hasattr(entry, "handler_class") else entry[1]
        if (
            isinstance(handler, type)
            and issubclass(handler, BaseApiHandler)
            and "get" in vars(handler)
            and (handler.__module__, handler.__name__) not in LIVE_API_READS
            and handler not in found
        ):
            found.append(handler)
    return found


def channel_state(watch: ChannelWatch) -> dict[str, Any]:
    from workers.monitoring import monitor_url, redacted_url

    return {
        "url": redacted_url(monitor_url()),
        "reachable": watch.cause is None,
        "cause": watch.cause,
        "live": watch.cause is None,
    }


def _unavailable_while_down(get: Callable[..., Any], watch: ChannelWatch) -> Callable[..., Any]:
    if getattr(get, "opsqueue_channel", False):
        return get

    @functools.wraps(get)
    async def get_or_unavailable(self: Any, *args: Any, **kwargs: Any) -> None:
        # Asking for the login first: a request without it is refused as before (401), and
        # learns nothing of the channel.
        banner = watch.banner()
        if banner and self.current_user:
            self.set_status(503)
            self.set_header("Retry-After", str(int(CHANNEL_CHECK_SECONDS)))
            if self.request.headers.get("X-Requested-With") == "XMLHttpRequest":
                # Flower's own pages (jQuery) show an error's text as it is, in a toast.
                self.set_header("Content-Type", "text/plain; charset=UTF-8")
                self.write(banner)
                return
            self.write({"error": banner, "monitoring_channel": channel_state(watch)})
            return
        result = get(self, *args, **kwargs)
        if inspect.isawaitable(result):
            await result

    get_or_unavailable.opsqueue_channel = True  # type: ignore[attr-defined]
    return get_or_unavailable


def _marked_while_down(write: Callable[..., Any], watch: ChannelWatch) -> Callable[..., Any]:
    if getattr(write, "opsqueue_channel", False):
        return write

    @functools.wraps(write)
    def write_marked(self: Any, chunk: Any) -> None:
        if isinstance(chunk, dict) and watch.banner():
            chunk = {**chunk, "monitoring_channel": channel_state(watch)}
        write(self, chunk)

    write_marked.opsqueue_channel = True  # type: ignore[attr-defined]
    return write_marked


def sqs_broker_page() -> None:
    """Make Flower's "Broker" page show the SQS queues the workers read and their depths.

    Flower's broker here is the monitoring channel: its page listed that Redis's own queues
    (default, media, …), as if they were the job queues and their depths, which stay on SQS.
    The depths come from the database (QueueDepth, sampled every minute), as on the
    operations page: a page never calls AWS."""
    import tornado.web
    from asgiref.sync import sync_to_async
    from flower.views.broker import BrokerView

    if getattr(BrokerView.get, "opsqueue_sqs", False):
        return

    @tornado.web.authenticated
    async def get(self: Any) -> None:
        from workers.monitoring import monitor_url, redacted_url

        rows = await sync_to_async(sqs_queue_rows)()
        # An absolute path: Flower's loader reads it as it is, and the page's own
        # `extends "base.html"` still resolves in Flower's templates.
        self.render(
            str(FLOWER_TEMPLATES / "broker.html"),
            rows=rows,
            channel_url=redacted_url(monitor_url()),
        )

    get.opsqueue_sqs = True  # type: ignore[attr-defined]
    BrokerView.get = get


def sqs_queue_rows() -> list[dict[str, Any]]:
    """The SQS queues' last sampled depths, as the Broker page shows them."""
    from django.utils import timezone

    from workers.broker import sqs_queue_name
    from workers.operations import queue_rows

    now = timezone.now()
    return [
        {
            "queue": row.depth.queue,
            "name": sqs_queue_name(row.depth.queue),
            "visible": row.depth.visible,
            "in_flight": row.depth.in_flight,
            "delayed": row.depth.delayed,
            "dead_letters": row.depth.dead_letters,
            "sampled_at": timezone.localtime(row.depth.sampled_at).strftime("%Y-%m-%d %H:%M:%S %Z"),
            "stale": row.stale,
            "error": row.depth.error,
        }
        for row in queue_rows(now=now)
    ]


def audit_actions() -> None:
    """Record every use of Flower's remote control; refuse its ways of starting tasks."""
    import importlib

    import tornado.web

    def refused(self: Any, *args: Any, **kwargs: Any) -> None:
        raise tornado.web.HTTPError(403, START_REFUSED)

    for table, replace in ((AUDITED_ACTIONS, None), (STARTS, refused)):
        for (module, name), action in table.items():
            handler = getattr(importlib.import_module(module), name)
            if not getattr(handler.post, "opsqueue_audited", False):
                handler.post = _audited(replace or handler.post, action)


def _audited(post: Callable[..., Any], action: str) -> Callable[..., Any]:
    from asgiref.sync import sync_to_async
    from tornado.web import HTTPError

    @functools.wraps(post)
    async def audited_post(self: Any, target: str, *args: Any, **kwargs: Any) -> None:
        # A request without the login is refused (401, or 403 under OAuth), not recorded.
        if not self.current_user:
            raise HTTPError(403)
        username = flower_login(self)
        status = 500
        try:
            if isinstance(self.current_user, FlowerAccount) and not self.current_user.can_act:
                raise HTTPError(403, ACT_REFUSED)  # recorded below, as the attempt it was
            result = post(self, target, *args, **kwargs)
            if inspect.isawaitable(result):
                await result
            status = self.get_status()
        except HTTPError as exc:
            status = exc.status_code
            raise
        finally:
            await sync_to_async(flower_action_record)(
                action=action,
                target=target,
                arguments=_arguments(self.request.arguments),
                username=username,
                remote_addr=self.request.remote_ip or "",
                status=status,
            )

    audited_post.opsqueue_audited = True  # type: ignore[attr-defined]
    return audited_post


def flower_login(handler: Any) -> str:
    """The name of the Flower login making this request."""
    user = handler.current_user
    if isinstance(user, FlowerAccount):
        return user.username  # a Django account
    if isinstance(user, str):
        return user  # OAuth: the account's e-mail address
    login = basic_login(handler.request.headers.get("Authorization", ""))
    return login[0] if login else "?"  # Flower's own Basic logins


def _arguments(arguments: dict[str, list[bytes]]) -> str:
    return " ".join(
        f"{name}={value.decode(errors='replace')}"
        for name, values in sorted(arguments.items())
        for value in values
    )[:255]


def flower_action_record(
    *, action: str, target: str, arguments: str, username: str, remote_addr: str, status: int
) -> None:
    """Write the audit row of one Flower action, and log it. Should the database be
    unreachable, the log line (an error) is the record."""
    from workers.models import FlowerAction

    line = "flower: %s %s (%s) by %s from %s: %s"
    fields = (action, target, arguments or "no options", username, remote_addr, status)
    try:
        FlowerAction.objects.create(
            action=action,
            target=target[:255],
            arguments=arguments,
            username=username[:150],
            remote_addr=remote_addr[:64],
            status=status,
        )
    except Exception:
        logger.exception("could not record " + line, *fields)
        return
    logger.info(line, *fields)


def look_only_pages() -> None:
    """Render Flower's pages read-only for an account that may look but not act: its own
    read-only mode (no Actions menu, pool, consumer, limit, revoke or terminate buttons),
    per request. A button that can only answer 403 is not shown; a forged request still
    gets that 403 (audit_actions)."""
    from flower.views import BaseHandler

    if getattr(BaseHandler.render, "opsqueue_look_only", False):
        return
    render = BaseHandler.render

    def render_for_account(self: Any, *args: Any, **kwargs: Any) -> Any:
        user = self.current_user
        if "read_only" in kwargs and isinstance(user, FlowerAccount) and not user.can_act:
            kwargs["read_only"] = True
        return render(self, *args, **kwargs)

    render_for_account.opsqueue_look_only = True  # type: ignore[attr-defined]
    BaseHandler.render = render_for_account


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
    if not uses_own_logins(args, dict(os.environ)):
        django_accounts()
    guard_metrics()
    api_asks_for_login()
    audit_actions()
    look_only_pages()
    channel_outage()
    sqs_broker_page()
    channel_watch.start()
    app.conf.broker_url = url
    app.conf.broker_transport_options = dict(TRANSPORT_OPTIONS)
    app.start(argv=args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
