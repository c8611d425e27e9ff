"""Sniffing a stored file's type from its first bytes, on files Pillow and pillow-heif write."""

from __future__ import annotations

import pytest

from media_pipeline.formats import SNIFF_BYTES, UNKNOWN, sniff, stored_type_of
from tests.media_pipeline.images import photo_file, quadrants

EXPECTED = {
    "JPEG": ("jpg", "image/jpeg"),
    "MPO": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
    "HEIF": ("heic", "image/heic"),
    "AVIF": ("avif", "image/avif"),
}


@pytest.mark.parametrize("fmt", EXPECTED)
def test_every_accepted_format_is_recognised_from_its_first_bytes(fmt: str) -> None:
    head = photo_file(fmt, quadrants(64, 48), orientation=1)[:SNIFF_BYTES]
    stored = sniff(head)
    assert (stored.extension, stored.content_type) == EXPECTED[fmt]
    assert stored.is_image
    assert stored_type_of(f"covers/originals/ab/abc.{stored.extension}") == stored


@pytest.mark.parametrize(
    "head",
    [
        b"<!doctype html><html><script>alert(1)</script>",
        b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>',
        b"%PDF-1.7\n",
        b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom",  # an MP4 video
        b"",
    ],
)
def test_anything_else_is_an_octet_stream_that_is_not_an_image(head: bytes) -> None:
    assert sniff(head) is UNKNOWN
    assert not UNKNOWN.is_image and UNKNOWN.content_type == "application/octet-stream"


def test_a_heif_that_is_neither_hevc_nor_av1_branded_is_plain_heif() -> None:
    head = b"\x00\x00\x00\x14ftypmif1\x00\x00\x00\x00mif1"
    assert (sniff(head).extension, sniff(head).content_type) == ("heif", "image/heif")


def test_a_stored_name_without_a_known_extension_is_served_as_an_octet_stream() -> None:
    assert stored_type_of("covers/originals/ab/abc.html") is UNKNOWN
    assert stored_type_of("covers/originals/ab/abc") is UNKNOWN
