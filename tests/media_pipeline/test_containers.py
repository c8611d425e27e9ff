"""Counting a container's pieces before any parser reads them, on real Pillow-made files."""

from __future__ import annotations

import io
import random

from media_pipeline import formats
from media_pipeline.containers import Pieces, count_pieces
from media_pipeline.samples import jpeg_bytes, photo
from tests.media_pipeline.images import exif_bytes, icc_bytes

UNLIMITED = Pieces(count=10**9, scans=10**9, stray_bytes=10**9)


def pieces_of(data: bytes, limits: Pieces = UNLIMITED) -> Pieces:
    return count_pieces(io.BytesIO(data), formats.sniff(data), limits=limits)


def test_a_photo_has_a_few_dozen_pieces_whatever_follows_its_end() -> None:
    photo_jpeg = jpeg_bytes(
        photo(800, 600), progressive=True, exif=exif_bytes(6), icc_profile=icc_bytes()
    )
    counted = pieces_of(photo_jpeg)
    assert counted.count < 40 and 5 <= counted.scans <= 12 and counted.stray_bytes == 0
    assert (counted.frame, counted.precision) == (0xC2, 8)  # progressive, 8-bit
    # 4:2:0, 100 x 75 blocks of luma and two 50 x 38 of chroma; libjpeg's script goes over
    # them 5.3 times.
    assert counted.blocks == 7_500 + 2 * 1_900
    assert 5 < counted.scan_blocks / counted.blocks < 6
    # A motion photo's video after the picture's end is not the picture's.
    assert pieces_of(photo_jpeg + random.Random(3).randbytes(1 << 20)) == counted


def test_fill_bytes_are_counted_exactly_across_reads_before_a_segment_and_in_scan_data() -> None:
    baseline = jpeg_bytes(photo(400, 300))
    sof = baseline.index(b"\xff\xc0")
    before_segment = baseline[:sof] + b"\xff" * 100_000 + baseline[sof:]
    in_scan_data = baseline[:-2] + b"\xff" * 150_001 + baseline[-2:]
    junk = baseline[:sof] + b"junk" * 10 + baseline[sof:]

    assert pieces_of(before_segment).stray_bytes == 100_000
    assert pieces_of(in_scan_data).stray_bytes == 150_001
    assert pieces_of(junk).stray_bytes == 40
    assert pieces_of(before_segment).count == pieces_of(baseline).count
    assert (pieces_of(junk).frame, pieces_of(junk).precision) == (0xC0, 8)


def test_counting_stops_just_past_a_limit() -> None:
    padded = b"\xff\xd8" + b"\xff\xe5\x00\x02" * 1_000_000 + jpeg_bytes(photo(64, 48))[2:]
    assert pieces_of(padded, Pieces(count=10, scans=100, stray_bytes=100)).count == 11
