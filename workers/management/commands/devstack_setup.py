"""Prepare the local system: migrations, the demo staff account, demo data.

Run by the dev stack (`make run`) on every start; safe to run again. Each app that has a
`demo` module with `seed(*, stdout)` adds its own demo data, so a newcomer sees every
capability working within the first minute.
"""

from __future__ import annotations

import hashlib
from importlib import import_module
from importlib.util import find_spec
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from django.db.migrations.loader import MigrationLoader


def migration_graph_fingerprint() -> str:
    """A short digest of the migrations on disk: it changes when any migration is added."""
    graph = MigrationLoader(None, ignore_no_migrations=True).graph
    leaves = ",".join(f"{app}.{name}" for app, name in sorted(graph.leaf_nodes()))
    return hashlib.sha256(leaves.encode()).hexdigest()[:12]


class Command(BaseCommand):
    help = "Migrate and create the demo staff account and demo data (development only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", required=True)
        parser.add_argument("--password", required=True)

    def handle(self, *args: Any, username: str, password: str, **options: Any) -> None:
        # Migrations go through the release path like any deploy's, so the admin shows the dev
        # stack's releases. In-process (--run-here) because this runs before any worker starts
        # and, on a fresh database, before the tables a queued job records itself in exist; it
        # takes the same migration lock and writes the same records. The version names the
        # migrations on disk, so a restart with nothing new is a recorded no-op and a pulled
        # migration makes a new release. Unsafe operations are allowed: no old code runs here.
        # (The release command is called by name: workers imports no domain app.)
        call_command(
            "release",
            release_version=f"dev-{migration_graph_fingerprint()}",
            run_here=True,
            allow_unsafe=True,
            stdout=self.stdout,
        )
        user, _ = get_user_model().objects.get_or_create(username=username)
        user.is_staff = True
        user.is_superuser = True
        user.email = f"{username}@localhost"
        user.set_password(password)
        user.save()
        self.stdout.write(f"demo staff account ready: {username}")
        for app_config in apps.get_app_configs():
            module_name = f"{app_config.name}.demo"
            if find_spec(module_name) is not None:
                import_module(module_name).seed(stdout=self.stdout)
