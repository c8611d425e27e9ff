"""The media jobs (registry: workers/job_registry.py), on the `media` queue."""

from __future__ import annotations

from django.conf import settings

from workers.job_registry import job_spec
from workers.periodic import PeriodicJob, periodic_job_declare

# A course cover's variants (courses.services.covers.course_cover_variants_build).
COURSE_COVER_VARIANTS_BUILD = job_spec(
    "media_pipeline.tasks.course_cover_variants_build",
    queue="media",
    old_names=("media_pipeline.tasks.build_cover_variants",),
)

# Replaced covers' files, deleted once their grace period is over
# (courses.services.cover_files.retired_files_delete).
RETIRED_COVER_FILES_DELETE = job_spec(
    "media_pipeline.tasks.retired_cover_files_delete", queue="media"
)

periodic_job_declare(
    PeriodicJob(
        "media: delete replaced cover files",
        RETIRED_COVER_FILES_DELETE,
        every=lambda: settings.MEDIA_RETIRED_FILES_SWEEP_SECONDS,
        description="Files of replaced covers, once MEDIA_RETIRED_FILE_GRACE_SECONDS have "
        "passed and nothing uses them again (MEDIA_RETIRED_FILES_SWEEP_SECONDS).",
    ),
)
