"""Import every installed app's `jobs` module, so the job and periodic registries are full
in any process (web, worker, beat, a management command) before they are read."""

from __future__ import annotations

from functools import cache

from django.utils.module_loading import autodiscover_modules


@cache
def jobs_modules_import() -> None:
    autodiscover_modules("jobs")
