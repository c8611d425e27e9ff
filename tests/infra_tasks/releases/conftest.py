"""Fixtures of the release tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.management import call_command

from tests.infra_tasks.releases.support import PROBE


@pytest.fixture
def probe_restored() -> Iterator[None]:
    """Leave the probe app fully migrated, as the test database had it, whatever the test did."""
    yield
    from tests.infra_tasks.releases.probe.models import Switch

    Switch.objects.all().delete()
    call_command("migrate", PROBE, verbosity=0)
