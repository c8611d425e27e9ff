"""Writes for covers: an upload stored and its variants queued; the variants built.

The web process only stores the uploaded original (under its content hash, with the
extension of its sniffed type, once the request's transaction commits) and enqueues
`media_pipeline.tasks.course_cover_variants_build(course_id, source_hash)` after commit.
The worker renders the variants, stores them under content-addressed names and records them;
the (course id, source hash) pair makes a stale or repeated message harmless. Files are
deleted only after the transaction that stopped referencing them commits, and only when no
other row still references them (identical covers share files: cover_files.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import Any, BinaryIO, cast

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.db import transaction

from courses.models import Course, CoverVariant
from courses.services.cover_files import (
    course_file_names,
    file_name_lock,
    file_store,
    files_delete_unreferenced,
    files_retire,
)
from media_pipeline.decode_slots import whole_decode_slot
from media_pipeline.formats import SNIFF_BYTES, sniff
from media_pipeline.jobs import COURSE_COVER_VARIANTS_BUILD
from media_pipeline.resize import (
    CorruptImage,
    ImageRejected,
    Variant,
    refuse_oversized_file,
    render_variants,
    sha256_of,
    variant_name,
)
from media_pipeline.specs import COVER_SPECS, VariantSpec
from media_pipeline.storage import (
    MEDIA_STORAGE_ERRORS,
    media_storage_check,
    media_storage_health,
)
from workers.display import counted
from workers.enqueue import Requester, job_enqueue, job_queue_check
from workers.joblog import JobLogWriter
from workers.logsink import LogSink

logger = logging.getLogger(__name__)

ORIGINALS_PREFIX = "covers/originals"


# --- covers: the web side ------------------------------------------------------------------


@transaction.atomic
def course_cover_set(*, course_id: int, upload: File, requester: Requester) -> Course:
    """Make `upload` the course's cover and queue its variants; returns at once.

    Uploading the cover the course already has queues nothing; if its variants are made,
    a note left by an earlier upload that was refused goes (the course's cover is the one
    this person just chose again, and the note would read as about it). Nothing is decoded
    here; the first bytes decide the stored name's extension (and so the type it is served
    as), not the uploader's file name or Content-Type. The file is stored only once the
    transaction commits, so an upload that rolls back leaves nothing in storage. A file
    over MEDIA_MAX_UPLOAD_BYTES is refused (ImageTooLarge) with nothing changed.
    """
    refuse_oversized_file(upload.size, settings.MEDIA_MAX_UPLOAD_BYTES)
    upload.seek(0)
    source_hash = sha256_of(cast(BinaryIO, upload))
    course = Course.objects.select_for_update().get(pk=course_id)
    if course.cover_sha256 == source_hash and course.cover_status != Course.CoverStatus.FAILED:
        if course.cover_status == Course.CoverStatus.READY and course.cover_error:
            course.cover_error = ""
            course.save(update_fields=["cover_error", "updated_at"])
        return course

    # Refuse before anything else: nothing is recorded for an upload that cannot be queued,
    # or whose original cannot be stored (S3 down or hanging: asked once, briefly).
    job_queue_check()
    media_storage_check()
    upload.seek(0)
    stored_type = sniff(upload.read(SNIFF_BYTES))
    name = f"{ORIGINALS_PREFIX}/{source_hash[:2]}/{source_hash}.{stored_type.extension}"
    previous = course_file_names(course)
    # The last good cover stays, its variants served, until the new one's are made: an
    # upload that turns out not to be a usable image then loses nothing.
    kept = _last_good_original(course)
    if kept == name:
        kept = ""  # the good cover uploaded again over a pending one: it is simply the cover
    course.cover = name
    course.cover_sha256 = source_hash
    course.cover_status = Course.CoverStatus.PENDING
    course.cover_error = ""
    course.cover_previous = kept
    course.save(
        update_fields=["cover", "cover_sha256", "cover_status", "cover_error", "cover_previous"]
    )
    # Variants of any other picture (a pending upload this one replaces) go now.
    keep_hashes = {original_hash(kept) if kept else source_hash}
    course.cover_variants.exclude(source_sha256__in=keep_hashes).delete()
    still_used = course_file_names(course)
    # Registered before the job's own on-commit publish, so the file is there before any
    # worker can look for it. Storage failing is answered there (the course has its good
    # cover back at once; the job then finds nothing to do). Robust for anything else: the
    # job still runs and fails with "the uploaded original is missing", shown on the course.
    transaction.on_commit(
        lambda: _original_store(name, upload, course_id=course.pk, source_hash=source_hash),
        robust=True,
    )
    transaction.on_commit(lambda: files_delete_unreferenced(names=previous - still_used))
    _enqueue_build(course, requester=requester)
    return course


def _last_good_original(course: Course) -> str:
    """The original of the course's last cover whose variants were made, if it has one."""
    if course.cover_status == Course.CoverStatus.READY and course.cover:
        return str(course.cover.name)
    if course.cover_status == Course.CoverStatus.PENDING:
        return course.cover_previous
    return ""


def original_hash(name: str) -> str:
    """The content hash an original is stored under (`<prefix>/ab/<hash>.<ext>`)."""
    return name.rsplit("/", 1)[-1].split(".", 1)[0]


def _original_store(name: str, upload: File, *, course_id: int, source_hash: str) -> None:
    """Store a committed upload under `name`, unless no course references it any more.

    Should storage fail (it went down after `media_storage_check`), the course is told at
    once, its previous good cover back if it had one: left pending, it read "variants being
    made" over an original that was never stored until its job failed on it."""
    try:
        with transaction.atomic():
            file_name_lock(name)
            # Another request may have replaced this cover between our commit and now; its
            # clean-up found no file to delete, so storing now would leave an orphan.
            if Course.objects.filter(cover=name).exists():
                upload.seek(0)
                file_store(name, upload)
    except MEDIA_STORAGE_ERRORS as exc:
        logger.exception("could not store the cover original %s", name)
        media_storage_health.fail(exc)
        _record_failure(
            course_id,
            source_hash,
            f"The uploaded file could not be stored ({type(exc).__name__}); upload it again.",
            storage_down=True,
        )


@transaction.atomic
def course_cover_regenerate(*, course_id: int, requester: Requester) -> Course | None:
    """Queue a job making the variants of the course's current cover that are missing
    (not recorded, or their file gone from storage); None if it has no cover.

    Variants that already exist are neither re-rendered nor rewritten by the worker: they
    are named by the original's content, so making them again gives the same files.
    """
    course = Course.objects.select_for_update().filter(pk=course_id).first()
    if course is None or not course.cover:
        return None
    _enqueue_build(course, requester=requester)
    return course


@transaction.atomic
def course_delete(*, course_id: int) -> None:
    course = Course.objects.select_for_update().filter(pk=course_id).first()
    if course is None:
        return
    names = course_file_names(course)
    course.delete()
    transaction.on_commit(lambda: files_delete_unreferenced(names=names))


def _enqueue_build(course: Course, *, requester: Requester) -> None:
    course_id, source_hash = course.pk, course.cover_sha256
    course.cover_status = Course.CoverStatus.PENDING
    course.cover_error = ""
    course.cover_task_id = job_enqueue(
        COURSE_COVER_VARIANTS_BUILD,
        requester=requester,
        args=[course_id, source_hash],
        audit_object=course,
    )
    course.save(update_fields=["cover_status", "cover_error", "cover_task_id", "updated_at"])


# --- covers: the worker side ---------------------------------------------------------------


def course_cover_variants_build(
    *, course_id: int, source_hash: str, task_id: str, specs: Iterable[VariantSpec] = COVER_SPECS
) -> dict[str, Any] | None:
    """Make the missing variants of the course's cover `source_hash`; safe to repeat.

    Returns None when the course is gone or its cover has changed since the job was queued.
    Raises ImageRejected for a bad source, and re-raises any other error, after recording
    the message on the course (unless its cover has changed meanwhile).
    """
    specs = tuple(specs)
    course = Course.objects.filter(pk=course_id).first()
    if course is None or course.cover_sha256 != source_hash:
        # Said in the job's log: a retried job that finds nothing to do must not read as
        # if it had made variants of the cover it was queued for.
        with JobLogWriter(task_id) as log:
            log.line(
                f"course {course_id} is gone: nothing to do"
                if course is None
                # A retry of a refused picture's job ends here too: that picture was
                # never the cover, and no other job was queued in its place.
                else f"course {course_id}: its cover is not {source_hash[:12]}, the picture "
                "this job was queued for (replaced since, or refused and not kept): nothing "
                "to do"
            )
        return None
    have = {
        v.spec_name: v.file.name
        for v in CoverVariant.objects.filter(course=course, source_sha256=source_hash)
    }
    with JobLogWriter(task_id) as log:
        try:
            # Asks storage about the variants recorded already (a regenerate, a redelivery):
            # inside the try, so storage down at this point fails the cover like any later
            # step instead of leaving it "Variants being made" for good.
            todo = [
                spec
                for spec in specs
                if have.get(spec.name) != variant_name(source_hash, spec)
                or not default_storage.exists(variant_name(source_hash, spec))
            ]
            # What it is about to make, in words: "0 of 4 to do" read as if nothing had
            # happened, to a person who had asked for the variants to be made.
            if todo:
                log.line(
                    f"course {course_id}: cover {source_hash[:12]}, {len(todo)} of "
                    f"{counted(len(specs), 'variant')} missing: making "
                    + ", ".join(spec.name for spec in todo)
                )
            else:
                log.line(
                    f"course {course_id}: cover {source_hash[:12]}, all "
                    f"{counted(len(specs), 'variant')} already made and stored: nothing to make"
                )
            return _build(course, todo, specs=specs, log=log)
        except ImageRejected as exc:
            log.line(f"refused: {exc}")
            if isinstance(exc, CorruptImage) and exc.__cause__ is not None:
                # The codec's own words on what is damaged, for whoever looks into it.
                log.line(f"the decoder said: {' '.join(str(exc.__cause__).split())}")
            _record_failure(course_id, source_hash, str(exc))
            raise
        except Exception as exc:
            # Storage down, a time limit, a bug: the course must not look "pending" forever.
            _record_failure(
                course_id,
                source_hash,
                f"Making the variants failed ({type(exc).__name__}: {exc}).",
                advice=REGENERATE_ADVICE,
            )
            raise


def course_cover_mark_lost(*, task_id: str, reason: str) -> None:
    """A variants job that ended where it could not say so (its worker lost, killed at its
    time limit): the course must not read "Variants being made" for good."""
    course = (
        Course.objects.filter(cover_task_id=task_id, cover_status=Course.CoverStatus.PENDING)
        .values_list("pk", "cover_sha256")
        .first()
    )
    if course is None:
        return  # done meanwhile, replaced, or another job's
    _record_failure(
        course[0],
        course[1],
        f"Making the variants did not finish: {reason}.",
        advice=REGENERATE_ADVICE,
    )


def _original_missing() -> str:
    """Why the original could not be read, with the likely cause when media is on local
    disk: a worker on another machine than the web process that stored it."""
    message = "The uploaded original is missing from media storage; upload the cover again."
    if isinstance(default_storage, FileSystemStorage):
        message += (
            f" Media is on this worker's disk ({settings.MEDIA_ROOT}): web and workers on "
            "separate machines must share it (one volume at DJANGO_MEDIA_ROOT everywhere), "
            "or keep it in S3 (AWS_STORAGE_BUCKET_NAME)."
        )
    return message


def _build(
    course: Course, todo: list[VariantSpec], *, specs: tuple[VariantSpec, ...], log: LogSink
) -> dict[str, Any] | None:
    source_hash = course.cover_sha256
    variants: list[Variant] = []
    if todo:
        try:
            with default_storage.open(str(course.cover.name), "rb") as source:
                variants = render_variants(
                    cast(BinaryIO, source),
                    todo,
                    max_pixels=settings.MEDIA_MAX_IMAGE_PIXELS,
                    # Stored before the limit was lowered, or by a path that skipped it.
                    max_bytes=settings.MEDIA_MAX_UPLOAD_BYTES,
                    whole_decode_slot=functools.partial(
                        whole_decode_slot, budget_pixels=settings.MEDIA_WHOLE_DECODE_BUDGET_PIXELS
                    ),
                )
        except FileNotFoundError as exc:
            raise ImageRejected(_original_missing()) from exc
    written = _record_variants(course.pk, source_hash, variants, specs=specs)
    if written is None:
        log.line("the cover changed while rendering; nothing was stored")
        return None
    for variant in variants:
        log.line(
            f"{variant.spec.name}: {variant.width}x{variant.height} {variant.content_type}, "
            f"{len(variant.data)} bytes"
            + ("" if variant.spec.name in written else " (already stored)")
        )
    summary = {
        "course": course.pk,
        "source": source_hash,
        "rendered": [v.spec.name for v in variants],
        "written": sorted(written),
    }
    log.line(
        f"done: {counted(len(variants), 'variant')} of the cover {source_hash[:12]}, "
        f"{len(written)} newly stored"
    )
    return summary


def _record_variants(
    course_id: int, source_hash: str, variants: list[Variant], *, specs: tuple[VariantSpec, ...]
) -> set[str] | None:
    """Store the variants and record them as the course's; the names of specs written.

    None, with nothing stored, when the course is gone or its cover changed meanwhile.
    """
    with transaction.atomic():
        course = Course.objects.select_for_update().filter(pk=course_id).first()
        if course is None or course.cover_sha256 != source_hash:
            return None
        written = set()
        for variant in sorted(variants, key=lambda v: variant_name(source_hash, v.spec)):
            name = variant_name(source_hash, variant.spec)
            file_name_lock(name)
            if file_store(name, ContentFile(variant.data)):
                written.add(variant.spec.name)
        stale = CoverVariant.objects.filter(course=course).exclude(
            source_sha256=source_hash, spec_name__in=[spec.name for spec in specs]
        )
        stale_names = set(stale.values_list("file", flat=True))
        stale.delete()
        for variant in variants:
            CoverVariant.objects.update_or_create(
                course=course,
                spec_name=variant.spec.name,
                defaults={
                    "source_sha256": source_hash,
                    "file": variant_name(source_hash, variant.spec),
                    "width": variant.width,
                    "height": variant.height,
                    "content_type": variant.content_type,
                    "size_bytes": len(variant.data),
                },
            )
        if course.cover_previous:
            # The cover it stood in for is no longer needed.
            stale_names.add(course.cover_previous)
        course.cover_status = Course.CoverStatus.READY
        course.cover_error = ""
        course.cover_previous = ""
        course.save(update_fields=["cover_status", "cover_error", "cover_previous", "updated_at"])
        # Served until this moment: kept a while for the pages that show them now.
        files_retire(names=stale_names)
    return written


# What to do about a failure that may be no fault of the picture (storage, a time limit):
# said only where the failed cover stays the course's, since regenerating rebuilds that one.
REGENERATE_ADVICE = " See the job's log, then use “Make missing cover variants”."


def _record_failure(
    course_id: int,
    source_hash: str,
    message: str,
    *,
    advice: str = "",
    storage_down: bool = False,
) -> None:
    """The cover `source_hash` cannot be used. Only the cover this job was for: a newer
    upload has its own job and status. A course that had a good cover has it again.

    With `storage_down`, the files no longer used are retired (deleted by the sweep, once
    storage answers) instead of deleted now: deleting them would wait on the storage that
    just failed, in the request of the person uploading."""
    with transaction.atomic():
        course = (
            Course.objects.select_for_update()
            .filter(pk=course_id, cover_sha256=source_hash)
            .first()
        )
        if course is None:
            return
        if not course.cover_previous:
            course.cover_status = Course.CoverStatus.FAILED
            course.cover_error = message + advice
            course.save(update_fields=["cover_status", "cover_error", "updated_at"])
            return
        refused = course_file_names(course)
        course.cover = course.cover_previous
        course.cover_sha256 = original_hash(course.cover_previous)
        course.cover_status = Course.CoverStatus.READY
        course.cover_error = f"The new cover was not used, the previous one is kept: {message}"
        course.cover_previous = ""
        course.save(
            update_fields=[
                "cover",
                "cover_sha256",
                "cover_status",
                "cover_error",
                "cover_previous",
                "updated_at",
            ]
        )
        course.cover_variants.exclude(source_sha256=course.cover_sha256).delete()
        unused = refused - course_file_names(course)
        if storage_down:
            files_retire(names=unused)
        else:
            transaction.on_commit(lambda: files_delete_unreferenced(names=unused))
