"""workers/local_aws.py: the local endpoint's cheaper SQS counts, remembered names and
module list give moto's own answers."""

from __future__ import annotations

import moto.backends
import pytest
from moto.core.utils import camelcase_to_underscores
from moto.sqs.models import Queue, SQSBackend

from workers.local_aws import (
    _delayed_count,
    _not_visible_count,
    _visible_messages,
    modules_patch,
    moto_modules,
    python_name,
)


def test_counts_equal_motos_own_for_visible_in_flight_and_delayed_messages() -> None:
    # moto's SQS backend itself, in this process: no endpoint, no patched class.
    backend = SQSBackend("us-east-1", "123456789012")
    queue = backend.create_queue("counts")
    for n in range(6):
        backend.send_message("counts", f"ready {n}")
    for n in range(3):
        backend.send_message("counts", f"later {n}", delay_seconds=600)
    received = backend.receive_message("counts", 2, 0, 600)
    assert len(received) == 2

    assert [m.id for m in _visible_messages(queue)] == [m.id for m in queue.messages]
    assert len(queue.messages) == 4
    assert _not_visible_count(queue) == queue.approximate_number_of_messages_not_visible == 2
    assert _delayed_count(queue) == queue.approximate_number_of_messages_delayed == 3


def test_remembered_names_equal_motos_own_for_every_queue_attribute_and_action() -> None:
    names = [
        *Queue.BASE_ATTRIBUTES,
        *Queue.FIFO_ATTRIBUTES,
        *Queue.KMS_ATTRIBUTES,
        "SendMessageBatch",
        "ReceiveMessage",
        "GetQueueAttributes",
    ]
    for _ in range(2):  # the second pass answers from memory
        assert [python_name(n) for n in names] == [camelcase_to_underscores(n) for n in names]
    assert python_name("ApproximateNumberOfMessagesDelayed") == (
        "approximate_number_of_messages_delayed"
    )


def test_module_list_read_once_equals_motos_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(moto.backends, "list_of_moto_modules", moto_modules)
    listed = list(moto_modules())
    assert "sqs" in listed and "s3" in listed

    modules_patch()

    assert list(moto.backends.list_of_moto_modules()) == listed
    assert list(moto.backends.list_of_moto_modules()) == listed  # and again, from memory
