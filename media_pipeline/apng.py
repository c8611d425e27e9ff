"""An animated PNG's first frame as a PNG of its own, when its default image is not part of
the animation; no Django.

An APNG whose first `fcTL` chunk comes after its `IDAT` keeps in `IDAT` a picture for
decoders that know no animation: browsers show the animation instead, its first frame
drawn on a fully transparent canvas of the `IHDR`'s size (APNG specification, "Structure").
libvips and Pillow read the `IDAT` picture, so a cover showed something else than the
browser. `first_animation_frame` presents that frame as a plain PNG for the same reduced
decode as any PNG: a view of the file (its compressed data is not copied) made of the
`IHDR` given the frame's size, the chunks before the pixels but the animation's, the
frame's `fdAT` chunks as `IDAT` (their sequence numbers left out, their CRCs computed
again) and `IEND`. As the specification asks of a frame that cannot be shown before the
animation starts, a damaged one gives None: the default image is shown.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from media_pipeline.spliced import SplicedStream

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks walked after the pixel data to find the first frame: an encoder writes a few per
# frame (and IDAT or fdAT chunks of 8 KiB, some thousands for a large picture); past this
# the default image is shown rather than the walk going on (4 million empty chunks took 7 s).
MAX_CHUNKS_AFTER_PIXELS = 100_000
_READ = 1 << 20


@dataclass(frozen=True)
class FirstFrame:
    png: BinaryIO  # the frame alone, as a PNG
    box: tuple[int, int, int, int]  # where it goes on the canvas: left, top, right, bottom


def first_animation_frame(source: BinaryIO) -> FirstFrame | None:
    """The first frame of `source` (a PNG; its position is kept) if it is an APNG whose
    default image is not part of the animation and that frame can be shown, else None."""
    position = source.tell()
    try:
        return _first_frame(source)
    except (struct.error, ValueError):
        return None  # cut short or damaged: the default image, as the specification asks
    finally:
        source.seek(position)


def _chunk_at(source: BinaryIO, start: int) -> tuple[int, int, bytes]:
    """The chunk at `start`: its data's offset, its length, its type."""
    source.seek(start)
    head = source.read(8)
    length, kind = struct.unpack(">I4s", head)
    return start + 8, length, kind


def _first_frame(source: BinaryIO) -> FirstFrame | None:
    source.seek(0)
    if source.read(8) != _SIGNATURE:
        return None
    at = 8
    header = b""
    animated = False
    kept: list[tuple[int, int]] = []  # whole chunks before the pixels, copied as they are
    while True:
        data, length, kind = _chunk_at(source, at)
        if kind == b"IHDR":
            header = source.read(13)
        elif kind == b"acTL":
            animated = True
        elif kind == b"fcTL":
            return None  # before IDAT: the default image is the first frame
        elif kind in (b"IDAT", b"IEND"):
            break
        else:
            kept.append((at, data + length + 4))
        at = data + length + 4
    if not animated or kind != b"IDAT" or len(header) != 13:
        return None
    width, height = struct.unpack(">II", header[:8])
    control = b""
    pieces: list[tuple[int, int]] = []  # the frame's fdAT data: offset, length
    for _ in range(MAX_CHUNKS_AFTER_PIXELS):
        at = data + length + 4
        data, length, kind = _chunk_at(source, at)
        if kind == b"IEND" or (kind == b"fcTL" and control):
            break
        if kind == b"fcTL":
            control = source.read(26)
        elif kind == b"fdAT" and control:
            if length < 4:
                return None
            pieces.append((data + 4, length - 4))
    else:
        return None
    if len(control) != 26 or not pieces:
        return None
    frame_width, frame_height, left, top = struct.unpack(">IIII", control[4:20])
    right, bottom = left + frame_width, top + frame_height
    if not (frame_width and frame_height and right <= width and bottom <= height):
        return None
    frame_header = struct.pack(">II", frame_width, frame_height) + header[8:]
    parts: list[bytes | tuple[int, int]] = [_SIGNATURE, _chunk(b"IHDR", frame_header)]
    parts += kept
    for offset, size in pieces:
        parts += [
            struct.pack(">I", size) + b"IDAT",
            (offset, offset + size),
            struct.pack(">I", _crc(source, b"IDAT", offset, size)),
        ]
    parts.append(_chunk(b"IEND", b""))
    return FirstFrame(io.BufferedReader(SplicedStream(source, parts)), (left, top, right, bottom))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _crc(source: BinaryIO, kind: bytes, offset: int, size: int) -> int:
    """The CRC of a chunk of type `kind` whose data are `size` bytes of `source` at
    `offset`, read a mebibyte at a time."""
    crc = zlib.crc32(kind)
    source.seek(offset)
    while size > 0:
        block = source.read(min(size, _READ))
        if not block:
            raise ValueError("chunk cut short")
        crc = zlib.crc32(block, crc)
        size -= len(block)
    return crc
