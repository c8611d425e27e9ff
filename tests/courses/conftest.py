"""Fixtures for the catalogue: courses, cover files, and an isolated media directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from courses.models import Course
from media_pipeline.samples import jpeg_bytes, photo


@pytest.fixture
def media_root(settings: object, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = str(tmp_path / "media")  # type: ignore[attr-defined]
    return tmp_path / "media"


@pytest.fixture(scope="session")
def cover_jpeg() -> bytes:
    return jpeg_bytes(photo(1200, 900, seed=1))


@pytest.fixture(scope="session")
def other_jpeg() -> bytes:
    return jpeg_bytes(photo(900, 1200, seed=2))


def make_course(slug: str = "course", *, published: bool = True) -> Course:
    return Course.objects.create(title=slug.title(), slug=slug, is_published=published)


def upload(data: bytes, name: str = "cover.jpg") -> ContentFile:
    return ContentFile(data, name=name)


def stored_files(root: Path) -> set[str]:
    if not root.exists():
        return set()
    return {
        str(Path(dirpath, name).relative_to(root))
        for dirpath, _, names in os.walk(root)
        for name in names
    }


def stored_image(name: str) -> Image.Image:
    with default_storage.open(name, "rb") as handle:
        image = Image.open(handle)
        image.load()
    return image
