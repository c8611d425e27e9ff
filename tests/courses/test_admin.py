"""The course admin: upload enqueues, status/error/previews shown, the permission-checked
regenerate action, deletion through the service, and the backfill command."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django_celery_results.models import TaskResult

from courses.models import Course, CoverVariant, Lesson, Section
from courses.services import course_cover_set, course_cover_variants_build
from media_pipeline.resize import ImageRejected
from tests.courses.conftest import make_course, stored_files, upload
from tests.support.broker import publishing_to
from tests.support.servers import AwsEndpoint, new_queue_prefix, own_queues_create
from workers.enqueue import Requester
from workers.models import Job
from workers.queues import QUEUES

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("sqs_queues", "media_root")]


def staff(*perms: str) -> Any:
    user = get_user_model().objects.create_user(f"staff{len(perms)}", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


# Committed as in production, so the original is stored and the message written within the
# request (captured callbacks would run them after its response). The job goes to queues of
# the test's own, which no worker reads: it must stay queued, and no worker of another test
# may run it after this test's tables are emptied.
@pytest.mark.django_db(transaction=True)
def test_uploading_in_the_admin_only_enqueues_and_the_job_names_the_user(
    client: Client, cover_jpeg: bytes, sqs_queues: AwsEndpoint
) -> None:
    user = staff("courses.change_course", "courses.view_course")
    client.force_login(user)
    course = make_course()
    prefix = new_queue_prefix()
    own_queues_create(sqs_queues, prefix, QUEUES)
    with publishing_to(prefix):
        response = client.post(
            f"/admin/courses/course/{course.pk}/change/",
            {
                "title": course.title,
                "slug": course.slug,
                "summary": "",
                "is_published": "on",
                "new_cover": SimpleUploadedFile("photo.jpg", cover_jpeg, "image/jpeg"),
                "sections-TOTAL_FORMS": "0",
                "sections-INITIAL_FORMS": "0",
                "cover_variants-TOTAL_FORMS": "0",
                "cover_variants-INITIAL_FORMS": "0",
            },
        )
    assert response.status_code == 302, response.content.decode()[:3000]
    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.PENDING
    assert not CoverVariant.objects.exists()
    job = Job.objects.get(task_id=course.cover_task_id)
    assert (job.queue, job.requester_label, job.requested_by) == ("media", user.username, user)
    page = client.get(response["Location"]).content.decode()
    # Named, not linked: this editor may not open job pages (the browser test follows the
    # link as a superuser).
    assert f"its variants are being made (job {course.cover_task_id})." in page


def test_the_good_cover_uploaded_again_after_a_refused_one_says_so_and_no_longer_shows_the_refusal(
    admin_client: Client, cover_jpeg: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    """Saving the course with its own cover chosen again read "The new cover was not used,
    the previous one is kept: The file is not an image" (the note of the refused upload
    before), as if the good picture had been refused."""
    course = make_course()
    with django_capture_on_commit_callbacks(execute=True):
        course_cover_set(
            course_id=course.pk, upload=upload(cover_jpeg), requester=Requester.cli("t")
        )
    course.refresh_from_db()
    course_cover_variants_build(course_id=course.pk, source_hash=course.cover_sha256, task_id="a")
    with django_capture_on_commit_callbacks(execute=True):
        course_cover_set(
            course_id=course.pk, upload=upload(b"plain text", "x.jpg"), requester=Requester.cli("t")
        )
    course.refresh_from_db()
    with pytest.raises(ImageRejected):
        course_cover_variants_build(
            course_id=course.pk, source_hash=course.cover_sha256, task_id="b"
        )
    url = f"/admin/courses/course/{course.pk}/change/"
    assert "The new cover was not used" in admin_client.get(url).content.decode()

    response = admin_client.post(
        url,
        {
            "title": course.title,
            "slug": course.slug,
            "new_cover": SimpleUploadedFile("again.jpg", cover_jpeg, "image/jpeg"),
            "sections-TOTAL_FORMS": "0",
            "sections-INITIAL_FORMS": "0",
            "_continue": "Save and continue editing",
        },
        follow=True,
    )

    page = response.content.decode()
    assert "That picture is already this course&#x27;s cover; nothing changed." in page
    assert "The new cover was not used" not in page and 'class="error"' not in page
    course.refresh_from_db()
    assert (course.cover_status, course.cover_error) == (Course.CoverStatus.READY, "")


def test_an_upload_over_the_size_limit_is_refused_on_the_form_and_nothing_changes(
    admin_client: Client, cover_jpeg: bytes, media_root: Path, settings: Any
) -> None:
    settings.MEDIA_MAX_UPLOAD_BYTES = 2**20
    course = make_course()
    # Past Django's in-memory size too: this one is spooled, up to the limit (project/uploads.py).
    padded = cover_jpeg + b"\0" * 4 * 2**20
    response = admin_client.post(
        f"/admin/courses/course/{course.pk}/change/",
        {
            "title": "Renamed",
            "slug": course.slug,
            "new_cover": SimpleUploadedFile("photo.jpg", padded, "image/jpeg"),
            "sections-TOTAL_FORMS": "0",
            "sections-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200  # the form again, with its error
    assert "a cover may be at most 1.0 MiB. Nothing was changed" in response.content.decode()
    course.refresh_from_db()
    assert course.title != "Renamed" and course.cover_status == Course.CoverStatus.NONE
    assert stored_files(media_root) == set() and not TaskResult.objects.exists()


def test_change_page_shows_status_error_job_link_and_variant_previews(
    admin_client: Client, cover_jpeg: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    good, bad = make_course("good"), make_course("bad")
    with django_capture_on_commit_callbacks(execute=True):
        course_cover_set(course_id=good.pk, upload=upload(cover_jpeg), requester=Requester.cli("t"))
        course_cover_set(
            course_id=bad.pk, upload=upload(b"plain text", "x.jpg"), requester=Requester.cli("t")
        )
    good.refresh_from_db()
    bad.refresh_from_db()
    course_cover_variants_build(course_id=good.pk, source_hash=good.cover_sha256, task_id="a")
    with pytest.raises(ImageRejected):
        course_cover_variants_build(course_id=bad.pk, source_hash=bad.cover_sha256, task_id="b")

    page = admin_client.get(f"/admin/courses/course/{good.pk}/change/").content.decode()
    assert "Ready" in page and f"/ops/jobs/{good.cover_task_id}/" in page
    assert page.count('<img src="/media/covers/variants/') == 4

    page = admin_client.get(f"/admin/courses/course/{bad.pk}/change/").content.decode()
    assert "Failed" in page and "The file is not an image" in page

    listing = admin_client.get("/admin/courses/course/?q=good").content.decode()
    assert 'src="/media/covers/variants/' in listing and "/bad/" not in listing


def test_the_cover_section_follows_the_variants_until_they_are_made(
    admin_client: Client, cover_jpeg: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    course = make_course()
    with django_capture_on_commit_callbacks(execute=True):
        course_cover_set(
            course_id=course.pk, upload=upload(cover_jpeg), requester=Requester.cli("t")
        )
    course.refresh_from_db()
    url = f"/admin/courses/course/{course.pk}/cover/"

    page = admin_client.get(f"/admin/courses/course/{course.pk}/change/").content.decode()
    assert f'data-live-url="{url}" data-live-finished="0"' in page  # the page polls it
    assert 'id="job-live"' in page  # and shows the variants job's log
    pending = admin_client.get(url).json()
    assert (pending["status"], pending["finished"]) == ("pending", False)
    assert "Variants being made" in pending["html"] and "<img" not in pending["html"]

    course_cover_variants_build(course_id=course.pk, source_hash=course.cover_sha256, task_id="a")
    ready = admin_client.get(url).json()
    assert (ready["status"], ready["finished"]) == ("ready", True)
    assert ready["html"].count("<img ") == 4 and "w800-webp" in ready["html"]


def test_the_cover_section_needs_the_view_permission(client: Client) -> None:
    course = make_course()
    client.force_login(staff("courses.view_enrolment"))
    assert client.get(f"/admin/courses/course/{course.pk}/cover/").status_code == 403


def test_a_read_only_course_page_offers_no_upload_and_shows_no_none(client: Client) -> None:
    course = make_course()
    client.force_login(staff("courses.view_course"))

    page = client.get(f"/admin/courses/course/{course.pk}/change/").content.decode()

    assert 'name="_save"' not in page, "read-only"
    assert "New cover" not in page and "None" not in page
    assert 'id="cover-live"' in page, "the cover itself is still shown"


def regenerate(client: Client, *courses: Course) -> Any:
    return client.post(
        "/admin/courses/course/",
        {"action": "regenerate_cover_variants", "_selected_action": [c.pk for c in courses]},
        follow=True,
    )


def test_regenerate_action_queues_jobs_for_courses_with_covers(
    client: Client, cover_jpeg: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    with_cover, without = make_course("with"), make_course("without")
    with django_capture_on_commit_callbacks(execute=True):
        course_cover_set(
            course_id=with_cover.pk, upload=upload(cover_jpeg), requester=Requester.cli("t")
        )
    user = staff("courses.view_course", "courses.regenerate_cover_variants")
    client.force_login(user)

    with django_capture_on_commit_callbacks(execute=True):
        response = regenerate(client, with_cover, without)

    assert (
        "Queued the missing cover variants of 1 course to be made (those already made are "
        "kept); skipped 1 without a cover."
    ) in response.content.decode()
    with_cover.refresh_from_db()
    # The job is named; not linked, since this person may not open job pages.
    page = response.content.decode()
    assert "Jobs: With." in page and f"/ops/jobs/{with_cover.cover_task_id}/" not in page
    assert Job.objects.get(task_id=with_cover.cover_task_id).requested_by == user
    assert TaskResult.objects.count() == 2


def test_regenerate_action_needs_its_permission(client: Client, cover_jpeg: bytes) -> None:
    course = make_course()
    client.force_login(staff("courses.view_course", "courses.change_course"))
    response = regenerate(client, course)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'value="regenerate_cover_variants"' not in page  # not offered
    assert "needs a permission you do not have. Nothing was changed." in page
    assert not TaskResult.objects.exists()


def test_deleting_in_the_admin_removes_the_files(
    admin_client: Client,
    cover_jpeg: bytes,
    media_root: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    course = make_course()
    with django_capture_on_commit_callbacks(execute=True):
        course_cover_set(
            course_id=course.pk, upload=upload(cover_jpeg), requester=Requester.cli("t")
        )
    assert stored_files(media_root)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/courses/course/{course.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Course.objects.exists() and stored_files(media_root) == set()


def test_backfill_queues_every_course_with_a_cover_in_batches(
    cover_jpeg: bytes, other_jpeg: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    for n in range(5):
        course = make_course(f"c{n}")
        with django_capture_on_commit_callbacks(execute=True):
            course_cover_set(
                course_id=course.pk,
                upload=upload(cover_jpeg if n % 2 else other_jpeg),
                requester=Requester.cli("t"),
            )
    make_course("no-cover")
    before = TaskResult.objects.count()
    out = io.StringIO()

    with django_capture_on_commit_callbacks(execute=True):
        call_command("cover_variants_backfill", batch_size=2, stdout=out, verbosity=0)

    assert out.getvalue().strip() == "queued cover variants for 5 of 5 courses"
    assert TaskResult.objects.count() == before + 5
    assert set(Job.objects.values_list("requester_label", flat=True)) == {
        "t",
        "cover_variants_backfill",
    }


def report_outline(client: Client, *courses: Course) -> Any:
    return client.post(
        "/admin/courses/course/",
        {"action": "report_outline", "_selected_action": [c.pk for c in courses]},
        follow=True,
    )


def test_outline_report_action_queues_a_django_task_per_course_named_for_the_user(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    first, second = make_course("first"), make_course("second")
    user = staff(
        "courses.view_course",
        "courses.report_course_outline",
        "django_celery_results.view_taskresult",
    )
    client.force_login(user)

    with django_capture_on_commit_callbacks(execute=True):
        response = report_outline(client, first, second)

    jobs = Job.objects.filter(task_name="courses.tasks.course_outline_report")
    assert jobs.count() == 2
    assert {job.requested_by for job in jobs} == {user}
    page = response.content.decode()
    assert "Queued the outline report for" in page
    for job in jobs:
        assert f'href="/ops/jobs/{job.task_id}/"' in page


def test_an_outline_report_job_page_names_the_course_it_reports_on(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    # It had no "For" row, unlike every other job's page.
    course = make_course("first")
    client.force_login(
        staff(
            "courses.view_course",
            "courses.report_course_outline",
            "django_celery_results.view_taskresult",
        )
    )
    with django_capture_on_commit_callbacks(execute=True):
        report_outline(client, course)
    job = Job.objects.get(task_name="courses.tasks.course_outline_report")

    page = client.get(f"/ops/jobs/{job.task_id}/", follow=True).content.decode()

    assert (
        f'<a href="/admin/courses/course/{course.pk}/change/" id="job-subject">'
        f"Outline of course {course.title}</a>"
    ) in page
    assert '<strong id="job-subject-state">Published</strong>' in page


def test_outline_report_action_needs_its_permission(client: Client) -> None:
    course = make_course()
    client.force_login(staff("courses.view_course", "courses.change_course"))
    response = report_outline(client, course)
    assert response.status_code == 200
    page = response.content.decode()
    assert 'value="report_outline"' not in page  # not offered
    assert "needs a permission you do not have. Nothing was changed." in page
    assert not TaskResult.objects.exists()


def test_a_video_address_typed_without_a_scheme_is_saved_as_https(client: Client) -> None:
    section = Section.objects.create(course=make_course(), title="Intro", position=1)
    lesson = Lesson.objects.create(section=section, title="Hello", position=1)
    client.force_login(staff("courses.change_lesson", "courses.view_section"))

    response = client.post(
        f"/admin/courses/lesson/{lesson.pk}/change/",
        {
            "section": section.pk,
            "title": "Hello",
            "position": 1,
            "kind": Lesson.Kind.LESSON,
            "body": "",
            "video_url": "videos.example.com/intro.mp4",
            "questions-TOTAL_FORMS": 0,
            "questions-INITIAL_FORMS": 0,
        },
    )

    assert response.status_code == 302, response.content[:2000]
    lesson.refresh_from_db()
    assert lesson.video_url == "https://videos.example.com/intro.mp4"


def test_an_enrolment_editor_who_may_not_see_users_is_offered_no_user_lookup_or_link(
    client: Client,
) -> None:
    """The user field is a raw id: Django offered a lookup of users and linked the chosen
    one's page, both a 403 for whoever may not see users; they type the id, and see the
    chosen user named."""
    from courses.models import Enrolment

    learner = get_user_model().objects.create_user("learner-ada")
    enrolment = Enrolment.objects.create(user=learner, course=make_course())
    editor = staff("courses.view_enrolment", "courses.change_enrolment", "courses.add_enrolment")
    client.force_login(editor)
    users = "/admin/auth/user/"
    for url in (
        f"/admin/courses/enrolment/{enrolment.pk}/change/",
        "/admin/courses/enrolment/add/",
    ):
        page = client.get(url).content.decode()
        assert 'name="user"' in page, url
        assert users not in page, url
    assert (
        "learner-ada"
        in client.get(f"/admin/courses/enrolment/{enrolment.pk}/change/").content.decode()
    )

    client.force_login(
        staff(
            "courses.view_enrolment",
            "courses.change_enrolment",
            "courses.add_enrolment",
            "auth.view_user",
        )
    )
    page = client.get(f"/admin/courses/enrolment/{enrolment.pk}/change/").content.decode()
    assert f"{users}?_to_field=id" in page and f"{users}{learner.pk}/change/" in page


@pytest.mark.django_db(transaction=True)
def test_an_upload_refused_with_sqs_unreachable_returns_to_the_course_saying_why(
    admin_client: Client, cover_jpeg: bytes
) -> None:
    """It returned to the course list: the person was on the course and tries again there."""
    from botocore.exceptions import EndpointConnectionError

    from workers.outbox import broker_health

    course = make_course()
    url = f"/admin/courses/course/{course.pk}/change/"
    broker_health.fail(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    try:
        response = admin_client.post(
            url,
            {
                "title": "Renamed",
                "slug": course.slug,
                "new_cover": SimpleUploadedFile("photo.jpg", cover_jpeg, "image/jpeg"),
                "sections-TOTAL_FORMS": "0",
                "sections-INITIAL_FORMS": "0",
            },
        )
    finally:
        broker_health.reset()

    assert response.status_code == 302 and response["Location"] == url
    page = admin_client.get(url).content.decode()
    assert "nothing was changed" in page.lower()
    course.refresh_from_db()
    assert course.title != "Renamed" and not course.cover
