"""A PNG seen without the compressed metadata chunks its readers would choke on; no Django.

Pillow refuses to open a PNG whose colour profile (iCCP) or compressed text (zTXt, iTXt)
inflates to more than PngImagePlugin.MAX_TEXT_CHUNK (1 MiB), or whose profile names an
unknown compression method, and libvips inflates such a chunk whole whatever its size (a
300 KiB chunk of zeros cost 300 MiB). Browsers ignore a profile they cannot use and show
the picture, and the pipeline writes no metadata anyway, so such chunks are hidden from
both readers: `without_unusable_metadata` gives a read-only view of the file minus those
chunks' bytes, no copy made. Every chunk is inflated here at most one byte past the limit,
and the file's chunks together at most INFLATE_BUDGET: past it, compressed chunks are hidden
without being inflated, and chunks after the pixel data (where neither reader looks) are not
even walked. Thousands of chunks that each inflated to a megabyte kept a worker
busy for minutes, and Pillow refused the picture once their text passed its own total.
"""

from __future__ import annotations

import io
import zlib
from typing import BinaryIO

from PIL import PngImagePlugin

from media_pipeline.spliced import SplicedStream

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COMPRESSED = (b"iCCP", b"zTXt", b"iTXt")
# Metadata hidden unread when longer than Pillow's limit for one chunk's text (1 MiB): real
# text, profiles and EXIF are kilobytes.
_METADATA = (*_COMPRESSED, b"tEXt", b"eXIf")
# Well within Pillow's total for a file's text (PngImagePlugin.MAX_TEXT_MEMORY, 64 MiB), and
# room for any real profile and metadata (an XMP packet or EXIF as text: kilobytes).
INFLATE_BUDGET = 8 * 2**20


def without_unusable_metadata(source: BinaryIO) -> BinaryIO:
    """`source` (a PNG, read from its start; its position is kept) itself if none of its
    compressed metadata chunks is unusable, else a view of it without them."""
    position = source.tell()
    try:
        hidden = _unusable_chunks(source)
    finally:
        source.seek(position)
    return io.BufferedReader(_without(source, hidden)) if hidden else source


def _unusable_chunks(source: BinaryIO) -> list[tuple[int, int]]:
    source.seek(0)
    if source.read(8) != _SIGNATURE:
        return []
    hidden: list[tuple[int, int]] = []
    inflated = 0
    while len(head := source.read(8)) == 8:
        start = source.tell() - 8
        length, kind = int.from_bytes(head[:4], "big"), head[4:8]
        end = start + 12 + length  # length, type, data, CRC
        if kind in (b"IDAT", b"IEND"):
            # Neither reader looks at chunks after the pixel data (Pillow stops at the first
            # IDAT, libvips once it has the last row), so they are not walked either: 4
            # million empty chunks there took 7 s to step through one at a time.
            break
        if kind in _COMPRESSED and inflated >= INFLATE_BUDGET:
            _hide(hidden, start, end)
            source.seek(length + 4, io.SEEK_CUR)
        elif kind in _METADATA and length > PngImagePlugin.MAX_TEXT_CHUNK:
            # Longer than Pillow's limit for one chunk's text, compressed or not: Pillow and
            # libvips each kept copies of uncompressed text (60 MiB of XMP before the pixels
            # cost 300 MiB; 63 MiB of EXIF 190 MiB), and compressed data this long was read
            # whole here first.
            _hide(hidden, start, end)
            source.seek(length + 4, io.SEEK_CUR)
        elif kind in _COMPRESSED:
            body = source.read(length)
            if len(body) < length:
                break  # truncated: the readers' own error
            usable, size = _usable(kind, body)
            inflated += size
            if not usable:
                _hide(hidden, start, end)
            source.seek(4, io.SEEK_CUR)
        else:
            source.seek(length + 4, io.SEEK_CUR)
    return hidden


def _hide(hidden: list[tuple[int, int]], start: int, end: int) -> None:
    """Add a chunk's range, joined to the last one when they touch: thousands of chunks in a
    row become one range to skip."""
    if hidden and hidden[-1][1] == start:
        hidden[-1] = (hidden[-1][0], end)
    else:
        hidden.append((start, end))


def _usable(kind: bytes, body: bytes) -> tuple[bool, int]:
    """Whether the chunk's compressed part is method 0 and inflates within Pillow's limit,
    and how many bytes it inflated to here (at most that limit)."""
    keyword_end = body.find(b"\0")
    if keyword_end < 0:
        return True, 0  # Pillow reads it as uncompressed or skips it
    if kind == b"iTXt":
        # keyword, NUL, compression flag, method, language, NUL, translated keyword, NUL, text
        flag = body[keyword_end + 1 : keyword_end + 2]
        method = body[keyword_end + 2 : keyword_end + 3]
        if flag != b"\x01":
            return True, 0
        parts = body[keyword_end + 3 :].split(b"\0", 2)
        if len(parts) < 3:
            return True, 0  # Pillow skips it
        data = parts[2]
    else:
        method, data = body[keyword_end + 1 : keyword_end + 2], body[keyword_end + 2 :]
    if method != b"\0":
        return kind != b"iCCP", 0  # Pillow refuses the whole file only for a profile's
    inflater = zlib.decompressobj()
    try:
        size = len(inflater.decompress(data, PngImagePlugin.MAX_TEXT_CHUNK))
    except zlib.error:
        return True, 0  # Pillow drops undecodable data itself
    return not inflater.unconsumed_tail, size  # Pillow's own test of a chunk


def _without(source: BinaryIO, hidden: list[tuple[int, int]]) -> SplicedStream:
    """`source` read as if the byte ranges `hidden` (sorted, disjoint) were not there."""
    total = source.seek(0, io.SEEK_END)
    kept: list[bytes | tuple[int, int]] = []
    offset = 0
    for start, end in [*hidden, (total, total)]:
        if start > offset:
            kept.append((offset, start))
        offset = end
    return SplicedStream(source, kept)
