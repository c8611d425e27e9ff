"""Make this process open new broker connections, e.g. after changing where they point."""

from kombu import pools

from workers.celery import app
from workers.outbox import broker_health, relay


def reset_broker_pools() -> None:
    # kombu keeps process-wide connection and producer pools; Celery caches references.
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


def drop_broker_connections() -> None:
    """Send what the relay holds, then forget every connection and what we knew of SQS."""
    relay.drain(timeout=30)
    reset_broker_pools()
    broker_health.reset()
