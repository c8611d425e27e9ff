"""Queue the cover variants of every course with a cover, in batches, with a progress bar.

Safe to re-run: the worker renders and writes only variants that are missing (for example
after a spec was added), so a course whose variants are complete costs one quick job.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from courses.models import Course
from courses.services import course_cover_regenerate
from workers.enqueue import BrokerUnavailable, Requester


class Command(BaseCommand):
    help = "Queue cover variant jobs for all courses that have a cover."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=200)
        parser.add_argument(
            "--not-ready-only",
            action="store_true",
            help="Only courses whose variants are not ready (pending or failed).",
        )

    def handle(self, *args: Any, batch_size: int, not_ready_only: bool, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        courses = Course.objects.exclude(cover="")
        if not_ready_only:
            courses = courses.exclude(cover_status=Course.CoverStatus.READY)
        total = courses.count()
        requester = Requester.cli("cover_variants_backfill")
        queued = last_pk = 0
        with tqdm(
            total=total, unit="course", desc="cover variants", disable=options["verbosity"] < 1
        ) as bar:
            # Keyset pagination: stable and cheap however many courses there are.
            while batch := list(
                courses.filter(pk__gt=last_pk)
                .order_by("pk")
                .values_list("pk", flat=True)[:batch_size]
            ):
                for course_id in batch:
                    try:
                        if course_cover_regenerate(course_id=course_id, requester=requester):
                            queued += 1
                    except BrokerUnavailable as exc:
                        raise CommandError(
                            f"{exc} {queued} of {total} were queued before that; "
                            "run the command again to continue."
                        ) from exc
                    bar.update(1)
                last_pk = batch[-1]
        self.stdout.write(
            f"queued cover variants for {queued} of {total} course{'' if total == 1 else 's'}"
        )
