"""Make this process open new broker connections, e.g. after changing where they point."""

from kombu import pools

from workers.celery import app


def drop_broker_connections() -> None:
    # kombu keeps process-wide connection and producer pools; Celery caches references.
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None
