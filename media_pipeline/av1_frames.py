"""The largest AV1 frame an AVIF file's data declares, read without decoding; no Django.

libavif (through Pillow) reports an AVIF's size from its `ispe` box, but dav1d decodes the
frame its AV1 sequence header declares, whatever `ispe` says: a 2 KB file claiming 1000x1000
decoded a 144-megapixel frame (over 300 MiB), past the pixel limit and the whole-decode slot.
So the pixel checks also use the sequence headers themselves: those of every AV1 item (the
picture, its alpha, grid tiles) and of the first sample of every track (an image sequence).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

# Bytes read from the start of an item or sample: its sequence header comes first (after at
# most a temporal delimiter), and is a few dozen bytes.
_SAMPLE_HEAD = 4096
# Boxes read into memory to be parsed (`meta`, `moov`); anything larger is not an AVIF we take.
_MAX_BOX = 16 << 20
_SEQUENCE_HEADER = 1


class _Bits:
    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._left = len(data) * 8

    def read(self, count: int) -> int:
        if count > self._left:
            raise ValueError("sequence header truncated")
        self._left -= count
        return (self._value >> self._left) & ((1 << count) - 1)

    def uvlc(self) -> int:
        zeros = 0
        while not self.read(1):
            zeros += 1
            if zeros >= 32:
                return (1 << 32) - 1
        return self.read(zeros) + (1 << zeros) - 1


def _max_frame_size(payload: bytes) -> tuple[int, int]:
    """max_frame_width/height of an AV1 sequence header OBU's payload (AV1 spec 5.5.1)."""
    bits = _Bits(payload)
    bits.read(3 + 1)  # seq_profile, still_picture
    if bits.read(1):  # reduced_still_picture_header
        bits.read(5)  # seq_level_idx[0]
    else:
        decoder_model_info = False
        buffer_delay_length = 0
        if bits.read(1):  # timing_info_present_flag
            bits.read(32 + 32)
            if bits.read(1):  # equal_picture_interval
                bits.uvlc()
            decoder_model_info = bool(bits.read(1))
            if decoder_model_info:
                buffer_delay_length = bits.read(5) + 1
                bits.read(32 + 5 + 5)
        initial_display_delay = bits.read(1)
        for _ in range(bits.read(5) + 1):  # operating points
            bits.read(12)
            if bits.read(5) > 7:  # seq_level_idx
                bits.read(1)
            if decoder_model_info and bits.read(1):
                bits.read(2 * buffer_delay_length + 1)
            if initial_display_delay and bits.read(1):
                bits.read(4)
    width_bits, height_bits = bits.read(4) + 1, bits.read(4) + 1
    return bits.read(width_bits) + 1, bits.read(height_bits) + 1


def _leb128(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if at + i >= len(data):
            break
        value |= (data[at + i] & 0x7F) << (7 * i)
        if not data[at + i] & 0x80:
            return value, at + i + 1
    raise ValueError("bad leb128")


def _sequence_header_size(sample: bytes) -> tuple[int, int] | None:
    """The frame size of the first sequence header among a sample's leading OBUs."""
    at = 0
    while at < len(sample):
        header = sample[at]
        obu_type, has_extension, has_size = (header >> 3) & 0xF, header & 4, header & 2
        at += 2 if has_extension else 1
        size, at = _leb128(sample, at) if has_size else (len(sample) - at, at)
        if obu_type == _SEQUENCE_HEADER:
            return _max_frame_size(sample[at : at + size])
        at += size
    return None


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the boxes in data[start:end]."""
    end = len(data) if end is None else end
    while start + 8 <= end:
        size, kind, payload = (
            int.from_bytes(data[start : start + 4], "big"),
            data[start + 4 : start + 8],
            start + 8,
        )
        if size == 1:
            size, payload = int.from_bytes(data[start + 8 : start + 16], "big"), start + 16
        elif size == 0:
            size = end - start
        if size < payload - start:
            return
        yield kind, payload, min(start + size, end)
        start += size


def _top_level(source: BinaryIO) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload offset, size of payload) of the file's top-level boxes, by seeking."""
    at = 0
    while True:
        source.seek(at)
        head = source.read(16)
        if len(head) < 8:
            return
        size, kind, header = int.from_bytes(head[:4], "big"), head[4:8], 8
        if size == 1:
            size, header = int.from_bytes(head[8:16], "big"), 16
        elif size == 0:
            size = source.seek(0, 2) - at
        if size < header:
            return
        yield kind, at + header, size - header
        at += size


def _u(data: bytes, at: int, size: int) -> tuple[int, int]:
    return int.from_bytes(data[at : at + size], "big"), at + size


def _av1_item_offsets(meta: bytes) -> list[int]:
    """File offsets of the first extent of every `av01` item in a `meta` box's payload."""
    av1_items: set[int] = set()
    locations: dict[int, int] = {}
    for kind, start, end in _boxes(meta, 4):  # meta is a FullBox
        if kind == b"iinf":
            version = meta[start]
            for entry, at, _ in _boxes(meta, start + (6 if version == 0 else 8), end):
                if entry == b"infe" and meta[at] >= 2:
                    item_id, at = _u(meta, at + 4, 2 if meta[at] == 2 else 4)
                    if meta[at + 2 : at + 6] == b"av01":
                        av1_items.add(item_id)
        elif kind == b"iloc":
            version, at = meta[start], start + 4
            offset_size, length_size = meta[at] >> 4, meta[at] & 0xF
            base_offset_size, index_size = meta[at + 1] >> 4, meta[at + 1] & 0xF
            count, at = _u(meta, at + 2, 2 if version < 2 else 4)
            for _ in range(count):
                item_id, at = _u(meta, at, 2 if version < 2 else 4)
                method = 0
                if version in (1, 2):
                    method, at = _u(meta, at, 2)
                base, at = _u(meta, at + 2, base_offset_size)
                extents, at = _u(meta, at, 2)
                first = None
                for _ in range(extents):
                    at += index_size if version in (1, 2) else 0
                    offset, at = _u(meta, at, offset_size)
                    at += length_size
                    first = base + offset if first is None else first
                if method == 0 and first is not None:
                    locations[item_id] = first
    return [locations[item] for item in sorted(av1_items) if item in locations]


def _first_chunk_offsets(moov: bytes, start: int = 0, end: int | None = None) -> list[int]:
    """The first chunk offset (`stco`/`co64`) of every track in a `moov` box's payload."""
    offsets = []
    for kind, at, box_end in _boxes(moov, start, end):
        if kind in (b"trak", b"mdia", b"minf", b"stbl"):
            offsets += _first_chunk_offsets(moov, at, box_end)
        elif kind in (b"stco", b"co64") and _u(moov, at + 4, 4)[0]:
            offsets.append(_u(moov, at + 8, 4 if kind == b"stco" else 8)[0])
    return offsets


def largest_av1_frame(source: BinaryIO) -> tuple[int, int] | None:
    """The widest and tallest frame any AV1 sequence header in the file's items or tracks
    declares (each side's maximum), or None if none is found; the stream is left where it was.
    Raises ValueError for structures too damaged to read."""
    position = source.tell()
    try:
        offsets: list[int] = []
        for kind, at, size in _top_level(source):
            if kind in (b"meta", b"moov"):
                if size > _MAX_BOX:
                    raise ValueError(f"{kind.decode()} box of {size} bytes")
                source.seek(at)
                box = source.read(size)
                offsets += _av1_item_offsets(box) if kind == b"meta" else _first_chunk_offsets(box)
        sizes = []
        for offset in offsets:
            source.seek(offset)
            if found := _sequence_header_size(source.read(_SAMPLE_HEAD)):
                sizes.append(found)
    except IndexError as exc:
        raise ValueError("AVIF structure truncated") from exc
    finally:
        source.seek(position)
    if not sizes:
        return None
    return max(width for width, _ in sizes), max(height for _, height in sizes)
