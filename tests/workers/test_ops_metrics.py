"""Queue latency, run-time percentiles, orphaned jobs, and the JSON metrics endpoint."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from tests.workers.jobs import job_row
from workers.models import QueuePause, WorkerHeartbeat
from workers.ops_metrics import percentile

pytestmark = pytest.mark.django_db

URL = "/ops/metrics.json"
DIAGNOSTIC = "workers.tasks.diagnostic_run_execute"
COVER = "media_pipeline.tasks.course_cover_variants_build"


def client_with(*codenames: str, staff: bool = True) -> Client:
    user = get_user_model().objects.create_user(f"u{len(codenames)}{staff}", is_staff=staff)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def known_jobs() -> None:
    # Waiting: the oldest media job was queued 90 s ago; default has nothing waiting.
    job_row(COVER, "PENDING", queue="media", created_ago=timedelta(seconds=90))
    job_row(COVER, "PENDING", queue="media", created_ago=timedelta(seconds=10))
    job_row(DIAGNOSTIC, "SUCCESS", created_ago=timedelta(seconds=100))
    # Diagnostic run times 1..20 s in the last hour, and a 100 s one 5 hours ago.
    for seconds in range(1, 21):
        job_row(DIAGNOSTIC, "SUCCESS", created_ago=timedelta(minutes=30), seconds=seconds)
    job_row(DIAGNOSTIC, "FAILURE", created_ago=timedelta(hours=5), seconds=100)
    QueuePause.objects.create(queue="release", paused_by_label="ops")
    now = timezone.now()
    WorkerHeartbeat.objects.create(hostname="alive@h", pid=1, started_at=now, last_seen_at=now)
    job_row(DIAGNOSTIC, "STARTED", worker="alive@h")
    job_row(DIAGNOSTIC, "STARTED", worker="dead@h")


def test_percentile_interpolates_between_ranks_like_percentile_cont() -> None:
    values = [float(n) for n in range(1, 21)]
    assert percentile(values, 0.5) == 10.5
    assert percentile(values, 0.95) == pytest.approx(19.05)
    assert percentile([4.0], 0.95) == 4.0


def test_metrics_give_latency_percentiles_pauses_and_orphans_from_known_jobs(
    known_jobs: None,
) -> None:
    data = client_with("view_operations").get(URL).json()
    queues = {q["queue"]: q for q in data["queues"]}
    assert 90 <= queues["media"]["oldest_waiting_seconds"] < 120
    assert queues["default"]["oldest_waiting_seconds"] == 0
    assert (queues["release"]["paused"], queues["media"]["paused"]) == (True, False)
    runtimes = {(r["task"], r["period"]): r for r in data["runtimes"]}
    hour = runtimes[(DIAGNOSTIC, "hour")]
    # The 100 s-old SUCCESS run of 1 s counts too: 21 runs of 1, 1..20 s in the last hour.
    assert (hour["runs"], hour["p50_seconds"], hour["max_seconds"]) == (21, 10.0, 20.0)
    assert hour["p95_seconds"] == pytest.approx(19.0)
    day = runtimes[(DIAGNOSTIC, "day")]
    assert (day["runs"], day["max_seconds"]) == (22, 100.0)
    assert data["orphaned_jobs"] == 1
    assert data["states"]["PENDING"]["last_hour"] == 2


def test_operations_page_shows_latency_percentiles_and_the_orphaned_job(
    known_jobs: None,
) -> None:
    html = client_with("view_operations").get("/ops/operations/").content.decode()
    assert 'id="queue-control"' in html and "paused</span> by ops" in html
    assert f'<tr data-task="{DIAGNOSTIC}" data-period="hour">' in html
    assert (
        "dead@h" in html
        and "alive@h</td>" not in html.split('id="orphans"')[1].split("</table>")[0]
    )
    # Without the pause permission there is no Pause or Resume button.
    assert 'id="pause-media"' not in html


def test_metrics_endpoint_needs_staff_with_the_operations_view_permission() -> None:
    assert Client().get(URL).status_code in (302, 403)
    assert client_with().get(URL).status_code == 403
    assert client_with("view_operations", staff=False).get(URL).status_code == 403
    response = client_with("view_operations").get(URL)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"


def test_pausing_needs_its_own_permission(known_jobs: None) -> None:
    viewer = client_with("view_operations")
    assert viewer.post("/ops/queues/media/pause/").status_code == 403
    pauser = client_with("view_operations", "pause_queue")
    assert pauser.post("/ops/queues/media/pause/").status_code == 302
    assert QueuePause.objects.filter(queue="media").exists()
    assert 'id="resume-media"' in pauser.get("/ops/operations/").content.decode()
