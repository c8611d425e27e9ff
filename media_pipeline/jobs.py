"""The media jobs (registry: workers/job_registry.py), on the `media` queue."""

from __future__ import annotations

from workers.job_registry import job_spec

# A course cover's variants (courses.services.covers.course_cover_variants_build).
COURSE_COVER_VARIANTS_BUILD = job_spec(
    "media_pipeline.tasks.course_cover_variants_build",
    queue="media",
    old_names=("media_pipeline.tasks.build_cover_variants",),
)
