"""A cover uploaded while SQS is unreachable: refused with a clear message, nothing changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django_celery_results.models import TaskResult

from courses.models import Course
from courses.services import course_cover_set
from tests.courses.conftest import make_course, upload
from tests.support.broker import drop_broker_connections
from tests.support.servers import AwsEndpoint
from workers.devstack import free_port
from workers.enqueue import BrokerUnavailable, Requester
from workers.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


def test_upload_with_the_broker_down_is_refused_and_changes_nothing(
    sqs_queues: AwsEndpoint, monkeypatch: pytest.MonkeyPatch, cover_jpeg: bytes, media_root: Path
) -> None:
    user = get_user_model().objects.create_user("dora", is_staff=True)
    course = make_course()
    before = Course.objects.values().get(pk=course.pk)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{free_port()}")
    drop_broker_connections()
    try:
        with pytest.raises(BrokerUnavailable, match="unreachable"):
            course_cover_set(
                course_id=course.pk, upload=upload(cover_jpeg), requester=Requester.for_user(user)
            )
    finally:
        monkeypatch.undo()
        drop_broker_connections()

    assert Course.objects.values().get(pk=course.pk) == before
    assert not TaskResult.objects.exists() and not Job.objects.exists()
    assert not any(p.is_file() for p in media_root.rglob("*"))
