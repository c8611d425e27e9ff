"""The local AWS endpoint of the dev stack, the tests and the benchmarks: moto_server from
PyPI, with its SQS message counts made cheap.

moto 5.2 reads the clock once per message whenever it lists a queue's visible messages
(every ReceiveMessage) and, on every SendMessage, builds all of the queue's attributes,
three of which count its messages the same way. A queue holding a few hundred messages then
costs milliseconds per message sent, so moto, not the code under test, set the pace of the
relay benchmark and of the tests that queue many jobs (measured: 200 messages as 20
batches took 0.5 s into an empty queue, 2.0 s into one holding 400). Here the clock is
read once per count; which messages are counted, and everything else moto does, is
unchanged.

Every SendMessage also builds all of the queue's attributes, turning each attribute's name
into a Python name character by character: a tenth of the endpoint's CPU in the relay and
dispatch benchmarks. That conversion is a pure function of a name from a small set, so it
is remembered (`names_patch`). And on every request, to find which service it is for,
moto lists its own package directory (a `listdir` and an `isdir` per entry): another tenth,
per request. The installed package does not change while the server runs, so the list is
read once (`modules_patch`).

    python -m workers.local_aws -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import functools

import moto.backends
import moto.core.responses
import moto.sqs.models
from moto.core.utils import camelcase_to_underscores, unix_time_millis
from moto.server import main
from moto.sqs.models import Message, Queue


def _visible_messages(queue: Queue) -> list[Message]:
    now = unix_time_millis()
    return [m for m in queue._messages if now > m.visible_at and now >= m.delayed_until]


def _not_visible_count(queue: Queue) -> int:
    now = unix_time_millis()
    return sum(1 for m in queue._messages if now <= m.visible_at)


def _delayed_count(queue: Queue) -> int:
    now = unix_time_millis()
    return sum(1 for m in queue._messages if now < m.delayed_until)


def counts_patch() -> None:
    """Replace Queue's per-message clock reads by one read per count (same results)."""
    Queue.messages = property(_visible_messages)  # type: ignore[assignment,method-assign]
    Queue.approximate_number_of_messages_not_visible = property(  # type: ignore[assignment,method-assign]
        _not_visible_count
    )
    Queue.approximate_number_of_messages_delayed = property(  # type: ignore[assignment,method-assign]
        _delayed_count
    )


# Its arguments are queue attribute names and API action names, a small set; the bound
# covers anything else a client sends as an attribute name at CreateQueue.
python_name = functools.lru_cache(maxsize=4096)(camelcase_to_underscores)


def names_patch() -> None:
    """Remember moto's attribute and action names in Python form (same results)."""
    moto.sqs.models.camelcase_to_underscores = python_name
    moto.core.responses.camelcase_to_underscores = python_name


moto_modules = moto.backends.list_of_moto_modules  # moto's own, kept for modules_patch


def modules_patch() -> None:
    """List moto's service modules once instead of on every request (same list)."""
    modules = tuple(moto_modules())
    moto.backends.list_of_moto_modules = lambda: modules


if __name__ == "__main__":
    counts_patch()
    names_patch()
    modules_patch()
    main()
