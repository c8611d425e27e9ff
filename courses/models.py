"""The course catalogue: courses → sections → lessons (text/video lessons or quizzes),
enrolments and lesson completions, and each course's cover image with its variants.

The cover original is stored as uploaded under a content-addressed name and is never
modified; variants are made by a worker (media_pipeline) and recorded as `CoverVariant` rows.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Course(models.Model):
    class CoverStatus(models.TextChoices):
        NONE = "none", "No cover"
        PENDING = "pending", "Variants being made"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    summary = models.TextField(blank=True)
    is_published = models.BooleanField(default=False, db_index=True)
    # Set only through services.course_cover_set, never by a form field.
    cover = models.FileField(max_length=255, blank=True, editable=False)
    cover_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    cover_status = models.CharField(
        max_length=16, choices=CoverStatus.choices, default=CoverStatus.NONE, editable=False
    )
    cover_error = models.TextField(blank=True, editable=False)
    cover_task_id = models.CharField(max_length=255, blank=True, editable=False)
    # The last good cover's original while a new one's variants are made: its variants stay
    # served, and it is the cover again should the new one be refused. A database default
    # too: web processes of the previous release insert courses without this column.
    cover_previous = models.CharField(
        max_length=255, blank=True, editable=False, default="", db_default=""
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title", "pk"]
        permissions = [
            ("regenerate_cover_variants", "Can regenerate cover variants"),
            ("report_course_outline", "Can run the course outline report"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=(Q(cover="") & Q(cover_sha256="") & Q(cover_status="none"))
                | (
                    ~Q(cover="")
                    & Q(cover_sha256__regex=r"^[0-9a-f]{64}$")
                    & ~Q(cover_status="none")
                ),
                name="course_cover_consistent",
            ),
            models.CheckConstraint(
                condition=~Q(cover_status="failed") | ~Q(cover_error=""),
                name="course_cover_failure_explained",
            ),
            models.CheckConstraint(
                condition=Q(cover_previous="") | Q(cover_status="pending"),
                name="course_cover_previous_only_while_pending",
            ),
        ]

    def __str__(self) -> str:
        return self.title


class CoverVariant(models.Model):
    """One derived image of a course's current cover, e.g. 200 px wide WebP."""

    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="cover_variants")
    spec_name = models.CharField(max_length=64)
    source_sha256 = models.CharField(max_length=64)
    # Content-addressed (source hash + spec): identical for every course with the same cover.
    file = models.FileField(max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    content_type = models.CharField(max_length=64)
    size_bytes = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["course", "width", "spec_name"]
        constraints = [
            models.UniqueConstraint(fields=["course", "spec_name"], name="cover_variant_per_spec"),
        ]
        indexes = [models.Index(fields=["file"], name="cover_variant_file_idx")]

    def __str__(self) -> str:
        return f"{self.course} · {self.spec_name}"


class RetiredFile(models.Model):
    """A stored cover file nothing should use any more (a replaced cover's variants), kept
    for a grace period: pages and API answers made a moment ago still point at it."""

    name = models.CharField(max_length=255, unique=True)
    retired_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return self.name


class Section(models.Model):
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="sections")
    title = models.CharField(max_length=200)
    position = models.PositiveIntegerField()

    class Meta:
        ordering = ["course", "position"]
        constraints = [
            models.UniqueConstraint(fields=["course", "position"], name="section_position_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.course} · {self.position}. {self.title}"


class Lesson(models.Model):
    class Kind(models.TextChoices):
        LESSON = "lesson", "Lesson (text or video)"
        QUIZ = "quiz", "Quiz"

    section = models.ForeignKey(Section, on_delete=models.CASCADE, related_name="lessons")
    title = models.CharField(max_length=200)
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.LESSON)
    body = models.TextField(blank=True)
    video_url = models.URLField(blank=True)

    class Meta:
        ordering = ["section", "position"]
        constraints = [
            models.UniqueConstraint(fields=["section", "position"], name="lesson_position_unique"),
            models.CheckConstraint(
                condition=Q(kind="lesson") | Q(video_url=""), name="lesson_quiz_has_no_video"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.title}"


class QuizQuestion(models.Model):
    lesson = models.ForeignKey(Lesson, on_delete=models.CASCADE, related_name="questions")
    position = models.PositiveIntegerField()
    prompt = models.TextField()
    options = models.JSONField(help_text="The answer options, in order, as a list of strings.")
    correct_option = models.PositiveIntegerField(help_text="Index (from 0) of the right option.")

    class Meta:
        ordering = ["lesson", "position"]
        constraints = [
            models.UniqueConstraint(fields=["lesson", "position"], name="question_position_unique"),
        ]

    def __str__(self) -> str:
        return self.prompt[:60]


class Enrolment(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="enrolments"
    )
    course = models.ForeignKey(Course, on_delete=models.CASCADE, related_name="enrolments")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "course"], name="enrolment_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.course}"


class LessonCompletion(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="lesson_completions"
    )
    lesson = models.ForeignKey(Lesson, on_delete=models.CASCADE, related_name="completions")
    completed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "lesson"], name="lesson_completed_once"),
        ]

    def __str__(self) -> str:
        return f"{self.user} completed {self.lesson}"
