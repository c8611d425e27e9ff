"""Media tasks (routed to the `media` queue by module): thin, they take ids and call services."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from media_pipeline.resize import ImageRejected


# A refused image is an expected outcome, not a crash: Celery records it as the job's
# failure with its message and logs it without a traceback.
@shared_task(bind=True, throws=(ImageRejected,))
def build_cover_variants(self: Any, course_id: int, source_hash: str) -> dict[str, Any] | None:
    from courses.services import course_cover_variants_build

    return course_cover_variants_build(
        course_id=course_id, source_hash=source_hash, task_id=self.request.id
    )
