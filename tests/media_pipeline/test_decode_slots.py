"""The machine-wide whole-decode lock, with real `flock`s on a real file.

Two open file descriptions conflict under `flock` even within one process, so threads stand
in for two pool processes here; the waiting side is checked with a bounded wait that only
a missing lock would let through.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from media_pipeline.containers import Pieces
from media_pipeline.decode_slots import whole_decode_slot
from media_pipeline.resize import render_variants
from media_pipeline.specs import COVER_SPECS
from tests.media_pipeline.images import (
    multiscan_baseline_jpeg,
    photo_file,
    quadrants,
    webp_animation,
    webp_one_small_frame_on_a_canvas,
)

BUDGET = 1_000_000


def hold_slot(pixels: int, lock_dir: Path) -> tuple[threading.Event, threading.Event]:
    """Take a slot in a thread; return (entered, release)."""
    entered, release = threading.Event(), threading.Event()

    def run() -> None:
        with whole_decode_slot(pixels, budget_pixels=BUDGET, lock_dir=lock_dir):
            entered.set()
            release.wait(30)

    threading.Thread(target=run, daemon=True).start()
    return entered, release


def test_decodes_over_the_budget_run_one_at_a_time(tmp_path: Path) -> None:
    first_in, first_release = hold_slot(48_000_000, tmp_path)
    assert first_in.wait(10)

    second_in, second_release = hold_slot(12_000_000, tmp_path)

    assert not second_in.wait(0.5), "a second large decode ran beside the first"
    first_release.set()
    assert second_in.wait(10)
    second_release.set()


def test_decodes_within_the_budget_do_not_wait(tmp_path: Path) -> None:
    first_in, first_release = hold_slot(48_000_000, tmp_path)
    assert first_in.wait(10)

    small_in, small_release = hold_slot(BUDGET, tmp_path)

    assert small_in.wait(10)
    first_release.set()
    small_release.set()


def still_webp(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "WEBP")
    return buffer.getvalue()


SOURCES = {
    "HEIF": lambda: photo_file("HEIF", quadrants(300, 200), orientation=1),
    "AVIF": lambda: photo_file("AVIF", quadrants(300, 200), orientation=1),
    "JPEG": lambda: photo_file("JPEG", quadrants(300, 200), orientation=1),
    "PNG": lambda: photo_file("PNG", quadrants(300, 200), orientation=1),
    "still WebP": lambda: still_webp(quadrants(300, 200)),
    # libvips decodes these at canvas size (resize._is_webp_animation).
    "WebP animation": lambda: webp_animation(quadrants(300, 200)),
    "one-frame WebP animation": lambda: webp_one_small_frame_on_a_canvas(300, 200),
}


@pytest.mark.parametrize(
    ("source", "slotted"),
    [
        ("HEIF", True),
        ("AVIF", True),
        ("JPEG", False),
        ("PNG", False),
        ("still WebP", False),
        ("WebP animation", True),
        ("one-frame WebP animation", True),
    ],
)
def test_only_formats_decoded_whole_take_a_slot(source: str, slotted: bool) -> None:
    asked: list[int] = []

    @contextmanager
    def slot(pixels: int) -> Iterator[None]:
        asked.append(pixels)
        yield

    data = SOURCES[source]()
    render_variants(io.BytesIO(data), COVER_SPECS, max_pixels=BUDGET, whole_decode_slot=slot)
    assert asked == ([300 * 200] if slotted else [])


def _interlaced(png: bytes) -> bytes:
    """The same PNG header saying Adam7 interlacing (the pixel data is not re-encoded, so
    only opening it is meaningful)."""
    import struct
    import zlib

    data = bytearray(png)
    data[28] = 1  # IHDR's interlace method
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_a_progressive_jpeg_and_an_interlaced_png_take_a_slot_too() -> None:
    """Their codecs hold the whole picture (every DCT coefficient, every row) whatever the
    scale: big ones wait their turn like HEIC and AVIF."""
    from media_pipeline.resize import _decoded_whole
    from media_pipeline.samples import jpeg_bytes, photo

    asked: list[int] = []

    @contextmanager
    def slot(pixels: int) -> Iterator[None]:
        asked.append(pixels)
        yield

    progressive = jpeg_bytes(photo(300, 200), progressive=True)
    render_variants(io.BytesIO(progressive), COVER_SPECS, max_pixels=BUDGET, whole_decode_slot=slot)
    assert asked == [300 * 200]
    png = photo_file("PNG", quadrants(300, 200), orientation=1)
    with Image.open(io.BytesIO(_interlaced(png))) as image:
        assert _decoded_whole(image, io.BytesIO(_interlaced(png)), Pieces(count=3))
    with Image.open(io.BytesIO(png)) as image:
        assert not _decoded_whole(image, io.BytesIO(png), Pieces(count=3))


@pytest.mark.parametrize("components", [1, 3, 4])
def test_a_baseline_jpeg_with_its_components_in_scans_of_their_own_takes_a_slot(
    components: int,
) -> None:
    """libjpeg keeps every coefficient of a JPEG of several scans, progressive or not:
    Pillow calls this one baseline, and a 7071x7071 one decoded in 337-432 MiB beside the
    slot. A one-scan baseline JPEG is decoded in strips and takes none."""
    asked: list[int] = []

    @contextmanager
    def slot(pixels: int) -> Iterator[None]:
        asked.append(pixels)
        yield

    source = multiscan_baseline_jpeg(320, 240, components)
    [variant] = render_variants(
        io.BytesIO(source), COVER_SPECS[:1], max_pixels=BUDGET, whole_decode_slot=slot
    )
    assert variant.width > 0
    assert asked == ([320 * 240] if components > 1 else [])
