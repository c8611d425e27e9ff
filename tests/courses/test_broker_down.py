"""A cover uploaded while SQS is unreachable: saved, marked failed with a clear message."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django_celery_results.models import TaskResult

from courses.models import Course
from courses.services import BROKER_DOWN_MESSAGE, course_cover_set
from tests.courses.conftest import make_course, upload
from tests.support.broker import drop_broker_connections
from tests.support.servers import AwsEndpoint
from workers.devstack import free_port
from workers.enqueue import BrokerUnavailable, Requester

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("media_root")]


def test_upload_with_the_broker_down_keeps_the_original_and_says_what_to_do(
    sqs_queues: AwsEndpoint, monkeypatch: pytest.MonkeyPatch, cover_jpeg: bytes
) -> None:
    user = get_user_model().objects.create_user("dora", is_staff=True)
    course = make_course()
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

    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.FAILED
    assert course.cover_error == BROKER_DOWN_MESSAGE
    assert course.cover.storage.exists(str(course.cover.name))
    assert not TaskResult.objects.exists()
