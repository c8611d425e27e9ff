"""Cover upload, the variant build, replacement and deletion, with real files and Pillow.

The build runs here in-process (it is what the worker calls); `test_end_to_end.py` runs it
through a real worker. Enqueueing publishes to the real SQS endpoint (moto_server).
"""

from __future__ import annotations

import fcntl
import json
import tempfile
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone
from django_celery_results.models import TaskResult

from courses.models import Course, CoverVariant, RetiredFile
from courses.services import (
    course_cover_regenerate,
    course_cover_set,
    course_cover_variants_build,
    course_delete,
)
from courses.services.cover_files import retired_files_delete
from media_pipeline.decode_slots import LOCK_NAME
from media_pipeline.resize import ImageRejected, variant_name
from media_pipeline.specs import COVER_SPECS
from tests.courses.conftest import make_course, stored_files, stored_image, upload
from tests.media_pipeline.images import photo_file, png_header_only, quadrants
from tests.support.broker import publishing_to
from workers.enqueue import Requester
from workers.models import Job
from workers.selectors import job_log_since

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("sqs_queues", "media_root", "queues_no_worker_reads"),
]


@pytest.fixture(scope="module", autouse=False)
def queues_no_worker_reads(sqs_queues: Any) -> Any:
    """These tests build covers themselves: the jobs they queue go where no worker reads.

    Otherwise a session's shared worker (started by an earlier module) takes the same job and
    builds the cover beside the test.
    """
    with publishing_to("opsqueue-unread-covers-"):
        yield


REQUESTER = Requester.cli("test")


def set_cover(course: Course, data: bytes, capture: Any, name: str = "cover.jpg") -> Course:
    with capture(execute=True):
        return course_cover_set(course_id=course.pk, upload=upload(data, name), requester=REQUESTER)


def build(course: Course, **kwargs: Any) -> dict[str, Any] | None:
    course.refresh_from_db()
    return course_cover_variants_build(
        course_id=course.pk, source_hash=course.cover_sha256, task_id=course.cover_task_id, **kwargs
    )


def test_upload_stores_the_original_and_queues_a_media_job_without_resizing(
    cover_jpeg: bytes, media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)

    assert course.cover_status == Course.CoverStatus.PENDING
    sha = course.cover_sha256
    assert course.cover.name == f"covers/originals/{sha[:2]}/{sha}.jpg"
    with default_storage.open(str(course.cover.name), "rb") as handle:
        assert handle.read() == cover_jpeg
    assert not CoverVariant.objects.exists()
    assert stored_files(media_root) == {course.cover.name}

    result = TaskResult.objects.get(task_id=course.cover_task_id)
    assert result.status == "PENDING"
    assert result.task_name == "media_pipeline.tasks.course_cover_variants_build"
    assert json.loads(result.task_args) == [course.pk, course.cover_sha256]
    assert Job.objects.get(task_id=course.cover_task_id).queue == "media"


def test_build_makes_every_variant_with_the_right_type_and_marks_the_cover_ready(
    cover_jpeg: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        summary = build(course)

    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.READY and course.cover_error == ""
    assert summary is not None and sorted(summary["written"]) == sorted(s.name for s in COVER_SPECS)
    variants = {v.spec_name: v for v in course.cover_variants.all()}
    assert set(variants) == {spec.name for spec in COVER_SPECS}
    for spec in COVER_SPECS:
        variant = variants[spec.name]
        assert variant.file.name == variant_name(course.cover_sha256, spec)
        assert variant.content_type == spec.content_type
        image = stored_image(variant.file.name)
        assert image.format == spec.format.value
        assert (
            (image.width, image.height)
            == (variant.width, variant.height)
            == (spec.width, spec.width * 3 // 4)
        )


def test_a_job_queued_under_the_tasks_former_name_builds_the_same_variants(
    cover_jpeg: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    """A message sent before the rename (build_cover_variants) runs the renamed task's code."""
    from workers.celery import app

    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    old = app.tasks["media_pipeline.tasks.build_cover_variants"]
    with django_capture_on_commit_callbacks(execute=True):
        summary = old.apply(
            args=[course.pk, course.cover_sha256], task_id=course.cover_task_id
        ).get()

    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.READY
    assert sorted(summary["written"]) == sorted(spec.name for spec in COVER_SPECS)


def test_a_rerun_renders_and_writes_nothing_and_its_log_says_nothing_was_missing(
    cover_jpeg: bytes, media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    build(course)
    files = {name: (media_root / name).stat().st_mtime_ns for name in stored_files(media_root)}

    with django_capture_on_commit_callbacks(execute=True):
        course_cover_regenerate(course_id=course.pk, requester=REQUESTER)
    summary = build(course)

    assert summary is not None and summary["rendered"] == [] and summary["written"] == []
    # Its log says that nothing was missing; it read "0 of 4 to do".
    assert job_log_since(task_id=course.cover_task_id).lines[0] == (
        f"course {course.pk}: cover {course.cover_sha256[:12]}, all 4 variants already made "
        "and stored: nothing to make"
    )
    assert {
        name: (media_root / name).stat().st_mtime_ns for name in stored_files(media_root)
    } == files
    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.READY


def test_files_a_killed_process_left_half_written_are_stored_again_whole(
    cover_jpeg: bytes, media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    """Local files are written in place: a worker killed while storing a variant, or a web
    process killed while storing an upload, leaves the first part of the file under its
    content-addressed name. The next build, or the same upload again, stores the whole file
    instead of taking the part for it (and serving a broken image as ready)."""
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    spec = COVER_SPECS[0]
    cut_variant = media_root / variant_name(course.cover_sha256, spec)
    cut_variant.parent.mkdir(parents=True, exist_ok=True)
    cut_variant.write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 60)

    with django_capture_on_commit_callbacks(execute=True):
        summary = build(course)

    assert summary is not None and spec.name in summary["written"]
    image = stored_image(cut_variant.relative_to(media_root).as_posix())
    assert (image.width, image.height) == (spec.width, spec.width * 3 // 4)

    original = media_root / str(course.cover.name)
    original.write_bytes(cover_jpeg[: len(cover_jpeg) // 2])
    set_cover(make_course("another"), cover_jpeg, django_capture_on_commit_callbacks)
    assert original.read_bytes() == cover_jpeg


def test_uploading_the_same_file_again_does_no_work(
    cover_jpeg: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    build(course)
    jobs = TaskResult.objects.count()

    again = set_cover(course, cover_jpeg, django_capture_on_commit_callbacks, name="renamed.jpg")

    assert TaskResult.objects.count() == jobs
    assert again.cover_status == Course.CoverStatus.READY
    assert again.cover_variants.count() == len(COVER_SPECS)


def test_a_spec_added_later_renders_only_the_new_variant(
    cover_jpeg: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    build(course, specs=COVER_SPECS[:3])
    summary = build(course, specs=COVER_SPECS)
    assert summary is not None and summary["rendered"] == [COVER_SPECS[3].name]
    assert course.cover_variants.count() == 4


def test_replacing_the_cover_serves_the_old_variants_until_the_new_ones_are_made(
    cover_jpeg: bytes, other_jpeg: bytes, media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    build(course)
    old_files = stored_files(media_root)
    old_variants = set(CoverVariant.objects.values_list("file", flat=True))
    assert len(old_files) == 1 + len(COVER_SPECS)

    course = set_cover(course, other_jpeg, django_capture_on_commit_callbacks)

    assert set(CoverVariant.objects.values_list("file", flat=True)) == old_variants
    assert stored_files(media_root) == old_files | {course.cover.name}
    with django_capture_on_commit_callbacks(execute=True):
        build(course)
    course.refresh_from_db()
    assert (course.cover_status, course.cover_previous) == (Course.CoverStatus.READY, "")
    # The old files outlive their use by a grace period: a page drawn a moment ago, or a
    # client that read the API, still loads them. Then the sweep deletes them.
    new_variants = set(course.cover_variants.values_list("file", flat=True))
    assert not new_variants & old_variants
    assert stored_files(media_root) == old_files | new_variants | {course.cover.name}
    grace = timedelta(seconds=settings.MEDIA_RETIRED_FILE_GRACE_SECONDS)
    assert retired_files_delete(now=timezone.now() + grace / 2) == 0
    assert retired_files_delete(now=timezone.now() + grace) == len(old_files)
    new_files = stored_files(media_root)
    assert len(new_files) == 1 + len(COVER_SPECS) and not new_files & old_files
    assert not RetiredFile.objects.exists()
    # Portrait source: 200 px wide variants are 267 px high.
    assert {(v.width, v.height) for v in course.cover_variants.filter(width=200)} == {(200, 267)}


@pytest.mark.parametrize("case", ["text", "truncated", "lost"])
def test_a_cover_that_cannot_be_used_leaves_the_good_one_in_place_and_says_why(
    case: str,
    cover_jpeg: bytes,
    other_jpeg: bytes,
    media_root: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Bad input loses nothing: the course keeps its last good cover, served throughout."""
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    build(course)
    course.refresh_from_db()
    good = (course.cover.name, course.cover_sha256)
    good_files = stored_files(media_root)
    variants = set(CoverVariant.objects.values_list("file", flat=True))
    bad = {
        "text": b"not a picture\n" * 100,
        "truncated": other_jpeg[: len(other_jpeg) // 2],
        "lost": other_jpeg,
    }[case]

    course = set_cover(course, bad, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        if case == "lost":
            from workers.reconcile import job_ended_unseen

            job_ended_unseen(
                task_name="media_pipeline.tasks.course_cover_variants_build",
                task_id=course.cover_task_id,
                reason="killed at its hard time limit (120 s)",
            )
        else:
            with pytest.raises(ImageRejected):
                build(course)

    course.refresh_from_db()
    assert (course.cover.name, course.cover_sha256) == good
    assert course.cover_status == Course.CoverStatus.READY and course.cover_previous == ""
    assert course.cover_error.startswith("The new cover was not used, the previous one is kept")
    # Regenerating would rebuild the kept cover, not the refused one: not offered.
    assert "Regenerate" not in course.cover_error
    assert set(CoverVariant.objects.values_list("file", flat=True)) == variants
    assert stored_files(media_root) == good_files  # the refused original is gone, nothing else


def test_the_good_cover_uploaded_again_after_a_refused_one_clears_the_refusal_and_queues_nothing(
    cover_jpeg: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    """The note of a refused upload stays until the person does something else with the
    cover: choosing the kept picture again is that, and the note would read as about it."""
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    build(course)
    course = set_cover(course, b"not a picture\n" * 100, django_capture_on_commit_callbacks)
    with pytest.raises(ImageRejected):
        build(course)
    course.refresh_from_db()
    assert course.cover_error.startswith("The new cover was not used")
    jobs = TaskResult.objects.count()

    again = set_cover(course, cover_jpeg, django_capture_on_commit_callbacks)

    again.refresh_from_db()
    assert (again.cover_status, again.cover_error) == (Course.CoverStatus.READY, "")
    assert again.cover_variants.count() == len(COVER_SPECS)
    assert TaskResult.objects.count() == jobs


def job_log_text(task_id: str) -> str:
    from workers.selectors import job_log_iter_text

    return "".join(job_log_iter_text(task_id=task_id))


def test_a_job_for_a_replaced_cover_returns_quietly_says_why_and_writes_nothing(
    cover_jpeg: bytes, other_jpeg: bytes, media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    stale_hash = course.cover_sha256
    course = set_cover(course, other_jpeg, django_capture_on_commit_callbacks)

    assert (
        course_cover_variants_build(course_id=course.pk, source_hash=stale_hash, task_id="stale")
        is None
    )
    assert stored_files(media_root) == {course.cover.name}
    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.PENDING
    assert "the picture this job was queued for (replaced since, or refused" in job_log_text(
        "stale"
    )


def test_a_job_for_a_deleted_course_returns_quietly_and_says_why(
    cover_jpeg: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    course_id, source_hash = course.pk, course.cover_sha256
    with django_capture_on_commit_callbacks(execute=True):
        course_delete(course_id=course_id)
    assert (
        course_cover_variants_build(course_id=course_id, source_hash=source_hash, task_id="gone")
        is None
    )
    assert f"course {course_id} is gone" in job_log_text("gone")


def test_deleting_a_course_removes_its_files_but_not_those_another_course_shares(
    cover_jpeg: bytes, media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    first = set_cover(make_course("first"), cover_jpeg, django_capture_on_commit_callbacks)
    second = set_cover(make_course("second"), cover_jpeg, django_capture_on_commit_callbacks)
    build(first)
    build(second)
    shared = stored_files(media_root)
    assert len(shared) == 1 + len(COVER_SPECS)  # identical covers share every file

    with django_capture_on_commit_callbacks(execute=True):
        course_delete(course_id=first.pk)
    assert stored_files(media_root) == shared

    with django_capture_on_commit_callbacks(execute=True):
        course_delete(course_id=second.pk)
    assert stored_files(media_root) == set()
    assert not Course.objects.exists() and not CoverVariant.objects.exists()


BAD_SOURCES = {
    "decompression bomb": (png_header_only(8000, 8000), "bomb.png", "64.0 megapixels"),
    "truncated jpeg": (None, "half.jpg", "truncated or corrupt"),
    "text named .jpg": (b"not a picture\n" * 100, "notes.jpg", "not an image"),
    "jpeg padded with empty segments": (
        b"\xff\xd8" + b"\xff\xe5\x00\x02" * 10_001 + b"\xff\xd9",
        "padded.jpg",
        "more than 10,000 JPEG segments",
    ),
}


@pytest.mark.parametrize("case", BAD_SOURCES)
def test_a_bad_source_fails_with_a_clear_message_and_the_course_and_original_intact(
    case: str, cover_jpeg: bytes, media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    data, name, message = BAD_SOURCES[case]
    data = data if data is not None else cover_jpeg[: len(cover_jpeg) // 2]
    course = make_course()
    course.summary = "kept"
    course.save()
    course = set_cover(course, data, django_capture_on_commit_callbacks, name=name)

    with pytest.raises(ImageRejected, match=message):
        build(course)

    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.FAILED
    assert message in course.cover_error
    assert course.summary == "kept" and course.title == "Course"
    with default_storage.open(str(course.cover.name), "rb") as handle:
        assert handle.read() == data
    assert stored_files(media_root) == {course.cover.name}
    assert not course.cover_variants.exists()
    log = job_log_text(course.cover_task_id)
    assert f"refused: {course.cover_error}" in log
    if case == "truncated jpeg":
        assert "the decoder said: " in log  # the codec's words, kept out of the message


def test_an_original_missing_from_a_workers_local_media_says_storage_must_be_shared(
    cover_jpeg: bytes, media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    # A worker on another machine than the web process, media on local disk: the file the
    # web process stored is not there. "Upload again" alone would fail the same way.
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    (media_root / str(course.cover.name)).unlink()

    with pytest.raises(ImageRejected, match="missing from media storage"):
        build(course)

    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.FAILED
    assert f"Media is on this worker's disk ({settings.MEDIA_ROOT})" in course.cover_error
    assert "AWS_STORAGE_BUCKET_NAME" in course.cover_error


@override_settings(MEDIA_MAX_IMAGE_PIXELS=500_000)
def test_the_pixel_limit_comes_from_settings(
    cover_jpeg: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    with pytest.raises(ImageRejected, match=r"limit is 0\.5 megapixels"):
        build(course)


def test_an_upload_over_the_size_limit_is_refused_and_changes_nothing(
    cover_jpeg: bytes, media_root: Path, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    build(course)
    course.refresh_from_db()
    before = (course.cover.name, course.cover_status, course.cover_task_id)
    files = stored_files(media_root)
    jobs = TaskResult.objects.count()
    settings.MEDIA_MAX_UPLOAD_BYTES = len(cover_jpeg)

    with pytest.raises(ImageRejected, match=r"a cover may be at most"):
        set_cover(course, cover_jpeg + b"\0", django_capture_on_commit_callbacks)

    course.refresh_from_db()
    assert (course.cover.name, course.cover_status, course.cover_task_id) == before
    assert stored_files(media_root) == files and TaskResult.objects.count() == jobs


def test_an_original_over_the_size_limit_is_refused_by_the_worker_with_a_clear_message(
    cover_jpeg: bytes, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    """Stored before the limit was lowered: the worker refuses it before reading it."""
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    settings.MEDIA_MAX_UPLOAD_BYTES = 1000

    with pytest.raises(ImageRejected, match=r"a cover may be at most 0\.0 MiB"):
        build(course)

    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.FAILED
    assert "a cover may be at most" in course.cover_error


def test_regenerating_a_course_without_a_cover_does_nothing() -> None:
    course = make_course()
    assert course_cover_regenerate(course_id=course.pk, requester=REQUESTER) is None
    assert not TaskResult.objects.exists()


def test_an_unexpected_storage_error_marks_the_cover_failed_instead_of_pending(
    cover_jpeg: bytes, media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    # A plain file where the variants directory must go: saving really fails, even as root.
    (media_root / "covers" / "variants").write_bytes(b"")

    with pytest.raises(OSError):
        build(course)

    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.FAILED
    assert course.cover_error.startswith("Making the variants failed (")
    assert "Make missing cover variants" in course.cover_error


@pytest.mark.django_db(transaction=True)
def test_an_upload_whose_transaction_rolls_back_leaves_nothing_in_storage(
    cover_jpeg: bytes, media_root: Path
) -> None:
    course = make_course()

    with pytest.raises(RuntimeError, match="the rest of the form"), transaction.atomic():
        course_cover_set(course_id=course.pk, upload=upload(cover_jpeg), requester=REQUESTER)
        raise RuntimeError("the rest of the form failed to save")

    assert stored_files(media_root) == set()
    course.refresh_from_db()
    assert not course.cover and course.cover_status == Course.CoverStatus.NONE
    assert not TaskResult.objects.exists()


def test_the_original_is_named_from_its_content_not_the_uploaded_name(
    media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    heic = photo_file("HEIF", quadrants(64, 48), orientation=1)
    course = set_cover(make_course(), heic, django_capture_on_commit_callbacks, name="x.html")
    assert str(course.cover.name).endswith(f"/{course.cover_sha256}.heic")
    assert stored_files(media_root) == {course.cover.name}

    text = set_cover(
        make_course("t"), b"<html></html>", django_capture_on_commit_callbacks, "a.png"
    )
    assert str(text.cover.name).endswith(f"/{text.cover_sha256}.bin")


def test_an_original_whose_cover_was_replaced_before_it_was_stored_is_not_stored(
    cover_jpeg: bytes, other_jpeg: bytes, media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    course = make_course()
    with django_capture_on_commit_callbacks() as first_commit:  # committed, not yet run
        course_cover_set(course_id=course.pk, upload=upload(cover_jpeg), requester=REQUESTER)
    course = set_cover(course, other_jpeg, django_capture_on_commit_callbacks)

    for callback in first_commit:  # the first request's after-commit work comes late
        callback()

    assert stored_files(media_root) == {course.cover.name}


@pytest.mark.django_db(transaction=True)
@override_settings(MEDIA_WHOLE_DECODE_BUDGET_PIXELS=10_000)
def test_a_large_avif_waits_for_the_machine_wide_whole_decode_slot(
    tmp_path: Path,
    media_root: Path,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    avif = photo_file("AVIF", quadrants(400, 300), orientation=1)
    course = set_cover(make_course(), avif, django_capture_on_commit_callbacks, name="a.avif")
    done = threading.Event()

    def build_in_thread() -> None:
        try:
            build(course)
        finally:
            connection.close()
            done.set()

    with (tmp_path / LOCK_NAME).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process's large decode, say
        threading.Thread(target=build_in_thread, daemon=True).start()
        assert not done.wait(1.0), "the build decoded without waiting for the slot"
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert done.wait(60)
    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.READY


def test_a_variants_job_that_ended_unseen_leaves_the_course_failed_not_pending(
    cover_jpeg: bytes, django_capture_on_commit_callbacks: Any
) -> None:
    """Its worker lost, or killed at its hard time limit: the family's handler says so."""
    from workers.reconcile import job_ended_unseen

    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    assert course.cover_status == Course.CoverStatus.PENDING

    job_ended_unseen(
        task_name="media_pipeline.tasks.course_cover_variants_build",
        task_id=course.cover_task_id,
        reason="killed at its hard time limit (120 s)",
    )

    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.FAILED
    assert "did not finish: killed at its hard time limit (120 s)" in course.cover_error
    assert "Make missing cover variants" in course.cover_error  # it is this cover's to rebuild
    # Uploading the same file again is not "already the cover": it is queued anew.
    again = set_cover(course, cover_jpeg, django_capture_on_commit_callbacks)
    assert again.cover_status == Course.CoverStatus.PENDING
    assert again.cover_task_id != course.cover_task_id


def test_a_retired_file_that_is_used_again_before_its_grace_ends_is_kept(
    cover_jpeg: bytes, other_jpeg: bytes, media_root: Path, django_capture_on_commit_callbacks: Any
) -> None:
    course = set_cover(make_course(), cover_jpeg, django_capture_on_commit_callbacks)
    build(course)
    first = stored_files(media_root)
    course = set_cover(course, other_jpeg, django_capture_on_commit_callbacks)
    build(course)
    # Back to the first picture while its files wait for deletion: they are its files again.
    course = set_cover(course, cover_jpeg, django_capture_on_commit_callbacks)
    build(course)
    grace = timedelta(seconds=settings.MEDIA_RETIRED_FILE_GRACE_SECONDS)
    retired_files_delete(now=timezone.now() + grace)
    assert first <= stored_files(media_root)
    assert set(course.cover_variants.values_list("file", flat=True)) <= first
