"""The pieces of an upload's container, counted from its bytes alone; no Django.

Pillow's JPEG, PNG and GIF parsers walk the pieces before the picture (segments, chunks,
extension blocks) one at a time in Python and keep what they read, and libwebp's demuxer
keeps a record per RIFF chunk, all before a pixel limit can be checked. Files within the
upload limit made only of such pieces cost a worker: 60 MiB of empty JPEG segments took
Pillow 31 s and 2 GiB to open, 60 MiB of fill bytes in a JPEG over a minute and a half to
read, 12 million GIF comment blocks 2 GiB, 5 million empty PNG chunks 21 s and 600 MiB. A
picture has a few dozen pieces (a progressive JPEG of 100 scans a few hundred, an animation
one a frame), so they are counted here first, a seek or a C regex search per piece, and the
count stops once past the limit the caller gives.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from typing import BinaryIO

from media_pipeline import formats


@dataclass(frozen=True)
class Pieces:
    count: int  # JPEG segments of the first picture; PNG chunks before the pixel data;
    # GIF blocks and sub-blocks before the first image; WebP chunks
    scans: int = 0  # JPEG: scans of the first picture
    stray_bytes: int = 0  # JPEG: fill (0xFF) and junk bytes outside segments and scan data
    frame: int = 0  # JPEG: the code of the first picture's frame marker (SOF0-SOF15)
    precision: int = 0  # JPEG: that frame's bits per sample (8 in a photo, 12 or 16 in some)
    # WebP: bytes of its largest metadata chunk (ICCP, EXIF, XMP); JPEG: of its colour
    # profile, all its APP2 pieces together (Pillow keeps each and joins them).
    metadata: int = 0
    # JPEG: the first picture's 8x8 blocks (all components), and the blocks its scans go
    # over together: each scan decodes every block of the components it covers.
    blocks: int = 0
    scan_blocks: int = 0


# The frame markers (SOFn): C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def count_pieces(source: BinaryIO, kind: formats.StoredType, *, limits: Pieces) -> Pieces:
    """The pieces of `source` (from its start; its position is kept) for a `kind` from
    formats.sniff; counting stops once any count passes its limit in `limits`."""
    position = source.tell()
    source.seek(0)
    try:
        if kind is formats.JPEG:
            return _jpeg(_Window(source), limits)
        if kind is formats.PNG:
            return _png(source, limits.count)
        if kind is formats.GIF:
            return _gif(source, limits.count)
        if kind is formats.WEBP:
            return _riff(source, limits.count)
        return Pieces(0)  # ISO-BMFF boxes are walked by libheif and libavif, in C
    finally:
        source.seek(position)


# A marker's code outside scan data: a byte after 0xFF that is neither a stuffed 0x00 nor
# another 0xFF (a fill byte). Matched on the code alone, with the 0xFF behind it, so a long
# run of 0xFF costs one pass and no backtracking.
_MARKER = re.compile(rb"(?<=\xff)[^\x00\xff]")
# What ends scan data: the same, but restart markers (D0-D7) belong to the scan.
_END_OF_SCAN = re.compile(rb"(?<=\xff)[^\x00\xd0-\xd7\xff]")
# What starts an APP2 segment holding a piece of the colour profile.
_ICC_PROFILE = b"ICC_PROFILE\0"


def _jpeg(data: _Window, limits: Pieces) -> Pieces:
    """The first picture's segments, scans and stray bytes: segments are skipped by their
    length (an EXIF thumbnail's scans are not the picture's), scan data is searched for the
    marker that ends it, and the count ends at the picture's end, so what follows it (a
    motion photo's video, an MPO's second picture) is not read."""
    if data.take(2) != b"\xff\xd8":
        return Pieces(0)
    segments = scans = stray = frame = precision = scan_blocks = profile = 0
    components: dict[int, int] = {}  # the first frame's component ids and their blocks
    in_scan = False
    while segments <= limits.count and scans <= limits.scans and stray <= limits.stray_bytes:
        passed, fill, code = data.search(_END_OF_SCAN if in_scan else _MARKER)
        # Bytes passed over in a scan are its data; elsewhere they are junk.
        stray += fill + (0 if in_scan else passed)
        if code is None:
            break
        in_scan = False
        if code == 0xD9:  # the picture's end
            break
        segments += 1
        if 0xD0 <= code <= 0xD7 or code == 0x01:
            continue  # no length field
        length = data.take(2)
        if len(length) < 2:
            break
        skip = int.from_bytes(length, "big") - 2
        if skip > 0 and ((code in _FRAMES and not frame) or code == 0xDA):
            body = data.take(skip)  # a frame's or a scan's header: a few bytes a component
            if len(body) < skip or not body:
                break
            if code == 0xDA:
                # Ns, then two bytes per component: its id first.
                scan_blocks += sum(components.get(c, 0) for c in body[1 : 1 + 2 * body[0] : 2])
            else:
                frame, precision, components = code, body[0], _component_blocks(body)
            skip = 0
        elif code == 0xE2 and skip >= len(_ICC_PROFILE) + 2:
            if data.take(len(_ICC_PROFILE)) == _ICC_PROFILE:
                profile += skip - len(_ICC_PROFILE) - 2  # after its sequence number and count
            skip -= len(_ICC_PROFILE)
        data.skip(skip)
        if code == 0xDA:
            scans += 1
            in_scan = True
    return Pieces(
        segments,
        scans=scans,
        stray_bytes=stray,
        frame=frame,
        precision=precision,
        blocks=sum(components.values()),
        scan_blocks=scan_blocks,
        metadata=profile,
    )


def _component_blocks(frame: bytes) -> dict[int, int]:
    """The 8x8 blocks of each component of a frame (its SOFn segment's body), by id."""
    height, width = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big")
    count = frame[5] if len(frame) > 5 else 0
    # Id, then horizontal and vertical sampling factors in one byte, then a table number.
    specs = [frame[i : i + 3] for i in range(6, 6 + 3 * count, 3) if len(frame) >= i + 3]
    if not specs:
        return {}
    most_across = max(spec[1] >> 4 for spec in specs) or 1
    most_down = max(spec[1] & 15 for spec in specs) or 1
    return {
        spec[0]: math.ceil(width * (spec[1] >> 4) / most_across / 8)
        * math.ceil(height * (spec[1] & 15) / most_down / 8)
        for spec in specs
    }


def _png(source: BinaryIO, stop_after: int) -> Pieces:
    source.seek(8)  # the signature
    chunks = 0
    while chunks <= stop_after:
        head = source.read(8)
        if len(head) < 8 or head[4:8] in (b"IDAT", b"IEND"):
            break
        chunks += 1
        source.seek(int.from_bytes(head[:4], "big") + 4, io.SEEK_CUR)  # data and CRC
    return Pieces(chunks)


def _gif(source: BinaryIO, stop_after: int) -> Pieces:
    screen = source.read(13)  # signature and logical screen descriptor
    if len(screen) < 13:
        return Pieces(0)
    if screen[10] & 0x80:
        source.seek(3 << ((screen[10] & 7) + 1), io.SEEK_CUR)  # the global colour table
    pieces = 0
    while pieces <= stop_after and source.read(1) == b"!":  # an extension, not an image
        source.read(1)  # its label
        pieces += 1
        while pieces <= stop_after and (size := source.read(1)) not in (b"", b"\0"):
            pieces += 1
            source.seek(size[0], io.SEEK_CUR)
    return Pieces(pieces)


def _riff(source: BinaryIO, stop_after: int) -> Pieces:
    source.seek(12)  # "RIFF", its size, "WEBP"
    chunks = metadata = 0
    while chunks <= stop_after:
        head = source.read(8)
        if len(head) < 8:
            break
        chunks += 1
        size = int.from_bytes(head[4:8], "little")
        if head[:4] in _WEBP_METADATA:
            metadata = max(metadata, size)
        source.seek(size + (size & 1), io.SEEK_CUR)
    return Pieces(chunks, metadata=metadata)


_WEBP_METADATA = (b"ICCP", b"EXIF", b"XMP ")


class _Window:
    """A forward-only view of a stream, read 64 KiB at a time."""

    def __init__(self, source: BinaryIO) -> None:
        self._source = source
        self._buffer = b""
        self._at = 0

    def _fill(self) -> bool:
        chunk = self._source.read(1 << 16)
        self._buffer = self._buffer[self._at :] + chunk
        self._at = 0
        return bool(chunk)

    def take(self, count: int) -> bytes:
        while len(self._buffer) - self._at < count and self._fill():
            pass
        taken = self._buffer[self._at : self._at + count]
        self._at += len(taken)
        return taken

    def skip(self, count: int) -> None:
        while count > len(self._buffer) - self._at:
            count -= len(self._buffer) - self._at
            self._at = len(self._buffer)
            if not self._fill():
                return
        self._at += max(count, 0)

    def search(self, pattern: re.Pattern[bytes]) -> tuple[int, int, int | None]:
        """Move past the next marker `pattern` finds (its code, after one or more 0xFF): the
        bytes passed over before it, the fill bytes (0xFF beyond the one a marker needs) and
        the code; None if the stream ends first."""
        passed = fill = 0
        while True:
            found = pattern.search(self._buffer, self._at)
            if found is not None:
                before = self._buffer[self._at : found.start()]
                run = len(before) - len(before.rstrip(b"\xff"))
                self._at = found.end()
                if run == 0:  # its 0xFF was consumed already (the end of a length field)
                    passed += len(before) + 1
                    continue
                passed += len(before) - run
                fill += run - 1
                return passed, fill, self._buffer[found.start()]
            rest = self._buffer[self._at :]
            run = len(rest) - len(rest.rstrip(b"\xff"))
            passed += len(rest) - run
            fill += max(run - 1, 0)
            # Keep a last 0xFF: its code may be in the next read.
            self._at = len(self._buffer) - min(run, 1)
            if not self._fill():
                return passed, fill, None
