"""Writes of the catalogue: enrolment and completion (catalogue.py), covers and their
variants (covers.py), the covers' shared files (cover_files.py)."""

from courses.services.catalogue import (
    AlreadyCompleted,
    AlreadyEnrolled,
    CatalogueError,
    CourseNotPublished,
    NotEnrolled,
    course_enrol,
    lesson_complete,
)
from courses.services.cover_files import files_delete_unreferenced
from courses.services.covers import (
    course_cover_regenerate,
    course_cover_set,
    course_cover_variants_build,
    course_delete,
)

__all__ = [
    "AlreadyCompleted",
    "AlreadyEnrolled",
    "CatalogueError",
    "CourseNotPublished",
    "NotEnrolled",
    "course_cover_regenerate",
    "course_cover_set",
    "course_cover_variants_build",
    "course_delete",
    "course_enrol",
    "files_delete_unreferenced",
    "lesson_complete",
]
