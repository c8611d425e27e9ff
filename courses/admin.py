"""Catalogue admin: courses with their sections, covers with status, error and previews.

A cover is uploaded through a plain file field; the service stores it and queues the
variants, so saving returns at once and nothing is decoded in the request.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from courses.models import (
    Course,
    Enrolment,
    Lesson,
    LessonCompletion,
    QuizQuestion,
    Section,
)
from courses.selectors import course_cover_variants
from courses.services import course_cover_regenerate, course_cover_set, course_delete
from courses.tasks import course_outline_report
from media_pipeline.formats import ACCEPTED_DESCRIPTION, SNIFF_BYTES, UNKNOWN, sniff
from media_pipeline.resize import ImageTooLarge, refuse_oversized_file
from workers.admin_links import job_link, may_open_jobs, refusal_report
from workers.display import counted
from workers.enqueue import BrokerUnavailable, Requester
from workers.errors import ApplicationError


class CourseAdminForm(forms.ModelForm):
    # A FileField, not an ImageField: ImageField would decode the upload in the request.
    new_cover = forms.FileField(
        required=False,
        label="Upload a cover",
        help_text=(
            f"{ACCEPTED_DESCRIPTION}; animated WebP and GIF and multi-picture JPEG use their "
            "first picture. The variants are made in the background."
        ),
    )

    class Meta:
        model = Course
        fields = ["title", "slug", "summary", "is_published"]

    def clean_new_cover(self) -> Any:
        """Refuse, on the form, a file whose first bytes are no accepted image type (a text
        file, a PDF): its job could only fail, and the page would say "being made" above
        the refusal. Only the signature is read here; the worker decodes and judges the rest."""
        upload = self.cleaned_data.get("new_cover")
        if upload:
            try:
                refuse_oversized_file(upload.size, settings.MEDIA_MAX_UPLOAD_BYTES)
            except ImageTooLarge as exc:
                raise forms.ValidationError(
                    f"{exc} Nothing was changed; the course keeps its cover."
                ) from exc
            upload.seek(0)
            head = upload.read(SNIFF_BYTES)
            upload.seek(0)
            if sniff(head) is UNKNOWN:
                raise forms.ValidationError(
                    f"This file is not a picture this site takes ({ACCEPTED_DESCRIPTION}). "
                    "Nothing was changed; the course keeps its cover."
                )
        return upload


class SectionInline(admin.TabularInline):
    model = Section
    extra = 0
    fields = ("position", "title")
    show_change_link = True


@admin.register(Course)
class CourseAdmin(admin.ModelAdmin):
    form = CourseAdminForm
    list_display = ("title", "slug", "is_published", "cover_status", "thumbnail", "updated_at")
    list_filter = ("is_published", "cover_status")
    search_fields = ("title", "slug", "summary")
    prepopulated_fields = {"slug": ("title",)}
    readonly_fields = ("cover_live",)
    fieldsets = (
        (None, {"fields": ("title", "slug", "summary", "is_published")}),
        ("Cover", {"fields": ("new_cover", "cover_live")}),
    )
    inlines = [SectionInline]
    actions = ["regenerate_cover_variants", "report_outline"]
    change_form_template = "admin/courses/course/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Course]:
        return super().get_queryset(request).prefetch_related("cover_variants")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # Read-only, the upload field is no field of the model: Django would show "None".
        return tuple(
            (name, {**options, "fields": tuple(f for f in options["fields"] if f != "new_cover")})
            for name, options in fieldsets
        )

    @admin.display(description="cover")
    def thumbnail(self, obj: Course) -> str:
        smallest = next(iter(obj.cover_variants.all()), None)
        if smallest is None:
            return "—"
        return format_html('<img src="{}" alt="" style="max-height: 40px">', smallest.file.url)

    @admin.display(description="cover and its variants")
    def cover_live(self, obj: Course) -> str:
        """Status, error, original, job and variants; refreshed on the page while the
        variants are being made (the cover view below answers the page's polls)."""
        if not obj.pk:
            return "—"
        return format_html(
            '<div id="cover-live" data-live-url="{}" data-live-finished="{}">{}</div>'
            '<script src="{}"></script>',
            reverse("admin:courses_course_cover", args=[obj.pk]),
            "0" if obj.cover_status == Course.CoverStatus.PENDING else "1",
            _cover_html(obj),
            static("workers/live_fragment.js"),
        )

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:course_id>/cover/",
                self.admin_site.admin_view(self.cover_view),
                name="courses_course_cover",
            ),
            *super().get_urls(),
        ]

    def cover_view(self, request: HttpRequest, course_id: int) -> JsonResponse:
        """The course page's cover section as it is now, for the page to redraw."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        course = get_object_or_404(self.get_queryset(request), pk=course_id)
        return JsonResponse(
            {
                "status": course.cover_status,
                "finished": course.cover_status != Course.CoverStatus.PENDING,
                "html": _cover_html(course),
            }
        )

    def save_model(self, request: HttpRequest, obj: Course, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        upload = form.cleaned_data.get("new_cover")
        if upload:
            course = course_cover_set(
                course_id=obj.pk, upload=upload, requester=Requester.for_user(request.user)
            )
            if course.cover_status == Course.CoverStatus.READY:
                # Only the course's own cover uploaded again comes back ready: nothing was
                # stored or queued. Said plainly, not with a note of an earlier upload.
                self.message_user(
                    request, "That picture is already this course's cover; nothing changed."
                )
                return
            # The original is stored once the admin's transaction commits (its callbacks
            # run in order, so this one comes after the store): say what happened then, not
            # "stored" over a store that may still fail.
            transaction.on_commit(lambda: self._report_cover(request, obj.pk))

    def _report_cover(self, request: HttpRequest, course_id: int) -> None:
        course = Course.objects.get(pk=course_id)
        if course.cover_status == Course.CoverStatus.PENDING and course.cover_task_id:
            self.message_user(
                request,
                format_html(
                    "Cover stored; its variants are being made ({}).",
                    job_link(course.cover_task_id, "job and log")
                    if may_open_jobs()
                    else f"job {course.cover_task_id}",
                ),
            )
        elif course.cover_error:
            self.message_user(request, course.cover_error, messages.ERROR)

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # A cover upload with the job queue unreachable is refused before anything is
        # written; the admin's transaction rolls back and the admin is told why.
        try:
            return super().changeform_view(request, *args, **kwargs)
        except ApplicationError as exc:  # a refusal, or the job queue unreachable
            refusal_report(self, request, exc)
            # Back to the course's own page (or the empty form of a new one), not the list:
            # the person was on it, and tries again from there.
            return HttpResponseRedirect(request.get_full_path())

    def delete_model(self, request: HttpRequest, obj: Course) -> None:
        course_delete(course_id=obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Course]) -> None:
        for course_id in queryset.values_list("pk", flat=True):
            course_delete(course_id=course_id)

    # Named for what its job does: it makes the variants that are missing and keeps the
    # ones stored (the same files, named by the original's content). "Regenerate" promised
    # more; on a course whose variants were all made, its job said "0 of 4 to do".
    @admin.action(
        description="Make missing cover variants", permissions=["regenerate_cover_variants"]
    )
    def regenerate_cover_variants(self, request: HttpRequest, queryset: QuerySet[Course]) -> None:
        requester = Requester.for_user(request.user)
        queued: list[Course] = []
        skipped = 0
        for course_id in queryset.values_list("pk", flat=True):
            try:
                course = course_cover_regenerate(course_id=course_id, requester=requester)
            except ApplicationError as exc:  # a refusal, or the job queue unreachable
                refusal_report(self, request, exc)
                break
            if course is None:
                skipped += 1
            else:
                queued.append(course)
        if queued or skipped:
            self.message_user(
                request,
                format_html(
                    "Queued the missing cover variants of {} to be made (those already "
                    "made are kept){}{}",
                    counted(len(queued), "course"),
                    f"; skipped {skipped} without a cover." if skipped else ".",
                    _jobs_sentence([(course.cover_task_id, course.title) for course in queued]),
                ),
                level=messages.SUCCESS if queued else messages.WARNING,
            )

    def has_regenerate_cover_variants_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("courses.regenerate_cover_variants")

    @admin.action(description="Report the outline (Django task)", permissions=["report_outline"])
    def report_outline(self, request: HttpRequest, queryset: QuerySet[Course]) -> None:
        # Through Django's Tasks API: the backend records who asked from the request.
        try:
            with transaction.atomic():
                results = [
                    (course, course_outline_report.enqueue(course.pk)) for course in queryset
                ]
        except BrokerUnavailable as exc:
            self.message_user(request, str(exc), level=messages.ERROR)
            return
        links = _titled_job_links([(result.id, course.title) for course, result in results])
        self.message_user(
            request, format_html("Queued the outline report for {}.", links), messages.SUCCESS
        )

    def has_report_outline_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("courses.report_course_outline")


# A message lists at most this many jobs; the rest are in the job list.
MESSAGE_LINKS = 10


def _titled_job_links(jobs: list[tuple[str, str]]) -> SafeString:
    """Links to the first MESSAGE_LINKS of these (task id, course title) jobs, by title."""
    return format_html_join(
        ", ", "{}", ((job_link(task_id, title),) for task_id, title in jobs[:MESSAGE_LINKS])
    )


def _jobs_sentence(jobs: list[tuple[str, str]]) -> SafeString:
    if not jobs:
        # format_html() with no arguments is deprecated (a TypeError from Django 6.0,
        # which would turn a course action's message into a 500).
        return SafeString("")
    more = len(jobs) - MESSAGE_LINKS
    return format_html(
        " Jobs: {}{}.", _titled_job_links(jobs), f" and {more} more" if more > 0 else ""
    )


def _cover_html(course: Course) -> str:
    return render_to_string(
        "admin/courses/course/cover.html",
        {"course": course, "variants": course_cover_variants(course_id=course.pk)},
    )


# A video address typed without a scheme ("youtu.be/…") is read as https, as Django 6 will
# by default: what a course platform's videos are served over.
LESSON_FORMFIELDS: dict[Any, dict[str, Any]] = {models.URLField: {"assume_scheme": "https"}}


class LessonInline(admin.TabularInline):
    model = Lesson
    extra = 0
    formfield_overrides = LESSON_FORMFIELDS
    fields = ("position", "title", "kind", "video_url")
    show_change_link = True


@admin.register(Section)
class SectionAdmin(admin.ModelAdmin):
    list_display = ("title", "course", "position", "lesson_count")
    list_select_related = ("course",)
    search_fields = ("title", "course__title")
    autocomplete_fields = ("course",)
    inlines = [LessonInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Section]:
        return super().get_queryset(request).annotate(lesson_count=Count("lessons"))

    @admin.display(description="lessons", ordering="lesson_count")
    def lesson_count(self, obj: Any) -> int:
        return int(obj.lesson_count)


class QuizQuestionInline(admin.StackedInline):
    model = QuizQuestion
    extra = 0


@admin.register(Lesson)
class LessonAdmin(admin.ModelAdmin):
    list_display = ("title", "kind", "section", "position")
    list_filter = ("kind",)
    list_select_related = ("section__course",)
    search_fields = ("title", "section__title", "section__course__title")
    autocomplete_fields = ("section",)
    inlines = [QuizQuestionInline]
    formfield_overrides = LESSON_FORMFIELDS


@admin.register(Enrolment)
class EnrolmentAdmin(admin.ModelAdmin):
    list_display = ("user", "course", "created_at")
    list_select_related = ("user", "course")
    search_fields = ("user__username", "course__title")
    autocomplete_fields = ("course",)
    raw_id_fields = ("user",)


@admin.register(LessonCompletion)
class LessonCompletionAdmin(admin.ModelAdmin):
    list_display = ("user", "lesson", "completed_at")
    list_select_related = ("user", "lesson")
    search_fields = ("user__username", "lesson__title")
    raw_id_fields = ("user", "lesson")
