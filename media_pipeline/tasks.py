"""Media tasks (names and queue: jobs.py): thin, they take ids and call services."""

from __future__ import annotations

from typing import Any

from courses.services import cover_files, covers
from media_pipeline import jobs
from media_pipeline.resize import ImageRejected
from workers.job_registry import job_task
from workers.outcomes import job_failed


@job_task(jobs.COURSE_COVER_VARIANTS_BUILD)
def course_cover_variants_build(
    self: Any, course_id: int, source_hash: str
) -> dict[str, Any] | None:
    try:
        return covers.course_cover_variants_build(
            course_id=course_id, source_hash=source_hash, task_id=self.request.id
        )
    except ImageRejected as exc:
        # A refused image is an expected outcome: FAILURE with its message, no traceback.
        job_failed(self, exc)


@job_task(jobs.RETIRED_COVER_FILES_DELETE)
def retired_cover_files_delete(self: Any) -> int:
    return cover_files.retired_files_delete()
