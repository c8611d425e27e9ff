"""Make this process open new broker connections, e.g. after changing where they point."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

from kombu import pools

from workers.celery import app
from workers.outbox import broker_health, relay


def reset_broker_pools() -> None:
    # kombu keeps process-wide connection and producer pools; Celery caches references.
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


def forget_broker_pools() -> None:
    """Make this process open new broker connections from now on, without closing the ones
    it has: for a moment when the relay may be using one. Closed under the relay (as
    `reset_broker_pools` closes them), a connection raised AttributeError from kombu in the
    middle of a batch, which then waited a minute for the unsent-job sweeper."""
    app._pool = None
    app.amqp._producer_pool = None


def drop_broker_connections() -> None:
    """Send what the relay holds, then forget every connection and what we knew of SQS."""
    relay.drain(timeout=30)
    reset_broker_pools()
    broker_health.reset()


@contextmanager
def publishing_to(
    prefix: str, *, endpoint_url: str | None = None, predefined: dict[str, str] | None = None
) -> Iterator[None]:
    """Make this process publish onto the SQS queues named with `prefix` (at `endpoint_url`,
    if given, instead of the session's endpoint). `predefined` (queue -> URL) names the
    queues as production does (SQS_QUEUE_URL_BASE): kombu then makes no queue that is
    missing, where it otherwise makes a plain one."""
    saved = app.conf.broker_transport_options
    saved_endpoint = os.environ.get("AWS_ENDPOINT_URL_SQS")
    app.conf.broker_transport_options = {**saved, "queue_name_prefix": prefix}
    if predefined:
        app.conf.broker_transport_options["predefined_queues"] = {
            f"{prefix}{queue}": {"url": url} for queue, url in predefined.items()
        }
    if endpoint_url:
        os.environ["AWS_ENDPOINT_URL_SQS"] = endpoint_url
    drop_broker_connections()
    try:
        yield
        # The relay sends after commit: let it finish while the prefix still applies.
        relay.drain(timeout=30)
    finally:
        app.conf.broker_transport_options = saved
        if saved_endpoint is not None:
            os.environ["AWS_ENDPOINT_URL_SQS"] = saved_endpoint
        drop_broker_connections()
