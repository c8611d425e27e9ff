"""Catalogue admin: courses with their sections, covers with status, error and previews.

A cover is uploaded through a plain file field; the service stores it and queues the
variants, so saving returns at once and nothing is decoded in the request.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from courses.models import (
    Course,
    CoverVariant,
    Enrolment,
    Lesson,
    LessonCompletion,
    QuizQuestion,
    Section,
)
from courses.services import course_cover_regenerate, course_cover_set, course_delete
from media_pipeline.formats import ACCEPTED_DESCRIPTION
from workers.admin_base import ReadOnlyAdminMixin
from workers.enqueue import BrokerUnavailable, Requester


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


class SectionInline(admin.TabularInline):
    model = Section
    extra = 0
    fields = ("position", "title")
    show_change_link = True


class CoverVariantInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = CoverVariant
    extra = 0
    can_delete = False
    fields = ("preview", "spec_name", "width", "height", "content_type", "size_bytes", "file")
    readonly_fields = fields
    verbose_name_plural = "cover variants (made by the media worker)"

    @admin.display(description="preview")
    def preview(self, obj: CoverVariant) -> str:
        return format_html('<img src="{}" alt="" style="max-width: 200px">', obj.file.url)


@admin.register(Course)
class CourseAdmin(admin.ModelAdmin):
    form = CourseAdminForm
    list_display = ("title", "slug", "is_published", "cover_status", "thumbnail", "updated_at")
    list_filter = ("is_published", "cover_status")
    search_fields = ("title", "slug", "summary")
    prepopulated_fields = {"slug": ("title",)}
    readonly_fields = ("cover_status", "cover_error", "cover_original", "cover_job")
    fieldsets = (
        (None, {"fields": ("title", "slug", "summary", "is_published")}),
        (
            "Cover",
            {
                "fields": (
                    "new_cover",
                    "cover_status",
                    "cover_error",
                    "cover_original",
                    "cover_job",
                )
            },
        ),
    )
    inlines = [SectionInline, CoverVariantInline]
    actions = ["regenerate_cover_variants"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Course]:
        return super().get_queryset(request).prefetch_related("cover_variants")

    @admin.display(description="cover")
    def thumbnail(self, obj: Course) -> str:
        smallest = next(iter(obj.cover_variants.all()), None)
        if smallest is None:
            return "—"
        return format_html('<img src="{}" alt="" style="max-height: 40px">', smallest.file.url)

    @admin.display(description="original")
    def cover_original(self, obj: Course) -> str:
        if not obj.cover:
            return "—"
        return format_html(
            '<a href="{}">{}</a> (sha256 {}…)', obj.cover.url, obj.cover.name, obj.cover_sha256[:12]
        )

    @admin.display(description="last variants job")
    def cover_job(self, obj: Course) -> str:
        if not obj.cover_task_id:
            return "—"
        url = reverse("workers:job-detail", args=[obj.cover_task_id])
        return format_html('<a href="{}">{}</a>', url, obj.cover_task_id)

    def save_model(self, request: HttpRequest, obj: Course, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        upload = form.cleaned_data.get("new_cover")
        if upload:
            course_cover_set(
                course_id=obj.pk, upload=upload, requester=Requester.for_user(request.user)
            )

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # A cover upload with the job queue unreachable is refused before anything is
        # written; the admin's transaction rolls back and the admin is told why.
        try:
            return super().changeform_view(request, *args, **kwargs)
        except BrokerUnavailable as exc:
            self.message_user(request, str(exc), level=messages.ERROR)
            return HttpResponseRedirect(reverse("admin:courses_course_changelist"))

    def delete_model(self, request: HttpRequest, obj: Course) -> None:
        course_delete(course_id=obj.pk)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Course]) -> None:
        for course_id in queryset.values_list("pk", flat=True):
            course_delete(course_id=course_id)

    @admin.action(
        description="Regenerate cover variants", permissions=["regenerate_cover_variants"]
    )
    def regenerate_cover_variants(self, request: HttpRequest, queryset: QuerySet[Course]) -> None:
        requester = Requester.for_user(request.user)
        queued, skipped = 0, 0
        for course_id in queryset.values_list("pk", flat=True):
            try:
                course = course_cover_regenerate(course_id=course_id, requester=requester)
            except BrokerUnavailable as exc:
                self.message_user(request, str(exc), level=messages.ERROR)
                break
            if course is None:
                skipped += 1
            else:
                queued += 1
        if queued or skipped:
            self.message_user(
                request,
                f"Queued cover variants for {queued} course(s)"
                + (f"; skipped {skipped} without a cover." if skipped else "."),
                level=messages.SUCCESS if queued else messages.WARNING,
            )

    def has_regenerate_cover_variants_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("courses.regenerate_cover_variants")


class LessonInline(admin.TabularInline):
    model = Lesson
    extra = 0
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
