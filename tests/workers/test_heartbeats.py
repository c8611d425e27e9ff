"""Worker heartbeat rows: one per worker, refreshed in place, forgotten after a week."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from workers.heartbeats import worker_heartbeat_record, worker_heartbeats_forget
from workers.models import WorkerHeartbeat

pytestmark = pytest.mark.django_db


def record(hostname: str, **changes: object) -> WorkerHeartbeat:
    values: dict = {
        "pid": 10,
        "queues": ["default"],
        "concurrency": 2,
        "active": 0,
        "processed": 0,
        "monitored": True,
        "started_at": timezone.now() - timedelta(minutes=5),
        **changes,
    }
    return worker_heartbeat_record(hostname=hostname, **values)


def test_each_beat_updates_the_workers_one_row() -> None:
    first = record("main@host", processed=3)
    second = record("main@host", processed=7, active=1)
    assert WorkerHeartbeat.objects.filter(hostname="main@host").count() == 1
    second.refresh_from_db()
    assert (second.processed, second.active) == (7, 1)
    assert second.last_seen_at >= first.last_seen_at


def test_workers_gone_for_a_week_are_forgotten() -> None:
    record("current@host")
    record("gone@host")
    WorkerHeartbeat.objects.filter(hostname="gone@host").update(
        last_seen_at=timezone.now() - timedelta(days=8)
    )
    assert worker_heartbeats_forget() == 1
    # (A real worker of the test session may have its own fresh row beside these.)
    kept = set(WorkerHeartbeat.objects.values_list("hostname", flat=True))
    assert "current@host" in kept and "gone@host" not in kept
