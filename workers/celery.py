"""The Celery app: all wiring in one place, configured from Django settings (CELERY_*)."""

import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

from workers.queues import DEFAULT_QUEUE, QueueTimeLimits, kombu_queues, route_task

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# sqs:// means kombu's SQS transport with a poll loop that survives failed polls (kombu
# issue 1127). Registered for the scheme, not as `broker_transport`: that setting would
# apply to every broker URL, the monitoring channel's redis:// (Flower, inspect) included.
TRANSPORT_ALIASES["sqs"] = "workers.sqs_transport:Transport"

# Every task claims its job before running (a duplicate delivery does nothing).
app = Celery("opsqueue", task_cls="workers.claims:ClaimedTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_default_queue=DEFAULT_QUEUE,
    task_queues=kombu_queues(),
    task_routes=(route_task,),
    task_annotations=(QueueTimeLimits(),),
)
app.autodiscover_tasks()


@app.on_after_configure.connect
def _use_predefined_queues(sender: Celery, **kwargs: object) -> None:
    # Resolved lazily (not at import) so settings are read once Django is configured.
    from workers.broker import predefined_queues

    queues = predefined_queues()
    if queues:
        options = dict(sender.conf.broker_transport_options or {})
        options["predefined_queues"] = queues
        sender.conf.broker_transport_options = options
