"""Media tasks (routed to the `media` queue by module): thin, they take ids and call services."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from media_pipeline.resize import ImageRejected
from workers.outcomes import job_failed


@shared_task(bind=True)
def build_cover_variants(self: Any, course_id: int, source_hash: str) -> dict[str, Any] | None:
    from courses.services import course_cover_variants_build

    try:
        return course_cover_variants_build(
            course_id=course_id, source_hash=source_hash, task_id=self.request.id
        )
    except ImageRejected as exc:
        # A refused image is an expected outcome: FAILURE with its message, no traceback.
        job_failed(self, exc)
