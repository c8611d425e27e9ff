"""The largest AV1 frame an AVIF file's data declares, read without decoding; no Django.

libavif (through Pillow) reports an AVIF's size from its `ispe` box, but dav1d decodes the
frame its AV1 sequence header declares, whatever `ispe` says: a 2 KB file claiming 1000x1000
decoded a 144-megapixel frame (over 300 MiB), past the pixel limit and the whole-decode slot.
So the pixel checks also use the sequence headers themselves: those of every AV1 item (the
picture, its alpha, grid tiles) and of the first sample of every track (an image sequence).
"""

from __future__ import annotations

from typing import BinaryIO

from media_pipeline.isobmff import MAX_BOX, boxes, item_locations, item_types, top_level, uint

# Bytes read from the start of an item or sample: its sequence header comes first (after at
# most a temporal delimiter), and is a few dozen bytes.
_SAMPLE_HEAD = 4096
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


def _av1_item_offsets(meta: bytes) -> list[int]:
    """File offsets of the first extent of every `av01` item in a `meta` box's payload."""
    types, locations = item_types(meta), item_locations(meta)
    return [
        locations[item].offset
        for item in sorted(types)
        if types[item] == b"av01" and item in locations and locations[item].method == 0
    ]


def _first_chunk_offsets(moov: bytes, start: int = 0, end: int | None = None) -> list[int]:
    """The first chunk offset (`stco`/`co64`) of every track in a `moov` box's payload."""
    offsets = []
    for kind, at, box_end in boxes(moov, start, end):
        if kind in (b"trak", b"mdia", b"minf", b"stbl"):
            offsets += _first_chunk_offsets(moov, at, box_end)
        elif kind in (b"stco", b"co64") and uint(moov, at + 4, 4)[0]:
            offsets.append(uint(moov, at + 8, 4 if kind == b"stco" else 8)[0])
    return offsets


def holds_av1_items(source: BinaryIO) -> bool:
    """Whether the file's `meta` box describes any `av01` item (the stream is left where it
    was); False for structures too damaged to read, which the decoders then refuse."""
    position = source.tell()
    try:
        for kind, at, size in top_level(source):
            if kind == b"meta" and size <= MAX_BOX:
                source.seek(at)
                return b"av01" in item_types(source.read(size)).values()
    except IndexError:
        pass
    finally:
        source.seek(position)
    return False


def largest_av1_frame(source: BinaryIO) -> tuple[int, int] | None:
    """The widest and tallest frame any AV1 sequence header in the file's items or tracks
    declares (each side's maximum), or None if none is found; the stream is left where it was.
    Raises ValueError for structures too damaged to read."""
    position = source.tell()
    try:
        offsets: list[int] = []
        for kind, at, size in top_level(source):
            if kind in (b"meta", b"moov"):
                if size > MAX_BOX:
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
