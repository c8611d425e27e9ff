"""Reading ISO base media files (HEIF, AVIF) box by box, without decoding; no Django.

The checks that refuse a forged HEIC or AVIF before any decoder sees it (media_pipeline/
av1_frames.py, heif_grids.py) walk the same structures: the top-level boxes, the boxes
inside one, and a `meta` box's item types (`iinf`) and item locations (`iloc`), ISO/IEC
14496-12 8.11.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

# Boxes read into memory to be parsed (`meta`, `moov`); anything larger is not a file we take.
MAX_BOX = 16 << 20


def boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
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


def top_level(source: BinaryIO) -> Iterator[tuple[bytes, int, int]]:
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


def uint(data: bytes, at: int, size: int) -> tuple[int, int]:
    return int.from_bytes(data[at : at + size], "big"), at + size


class ItemLocation(NamedTuple):
    method: int  # construction method: 0 in the file, 1 in the meta box's `idat`
    offset: int  # of the item's first extent, its base offset included
    length: int  # of that extent


def item_types(meta: bytes) -> dict[int, bytes]:
    """Item id -> item type (`av01`, `grid`, ...) of the items a `meta` box's payload
    describes with `infe` entries of version 2 or later."""
    types: dict[int, bytes] = {}
    for kind, start, end in boxes(meta, 4):  # meta is a FullBox
        if kind == b"iinf":
            version = meta[start]
            for entry, at, _ in boxes(meta, start + (6 if version == 0 else 8), end):
                if entry == b"infe" and meta[at] >= 2:
                    item_id, at = uint(meta, at + 4, 2 if meta[at] == 2 else 4)
                    types[item_id] = meta[at + 2 : at + 6]
    return types


def item_locations(meta: bytes) -> dict[int, ItemLocation]:
    """Item id -> where its first extent is, from a `meta` box's payload's `iloc`."""
    locations: dict[int, ItemLocation] = {}
    for kind, start, _end in boxes(meta, 4):
        if kind != b"iloc":
            continue
        version, at = meta[start], start + 4
        offset_size, length_size = meta[at] >> 4, meta[at] & 0xF
        base_offset_size, index_size = meta[at + 1] >> 4, meta[at + 1] & 0xF
        count, at = uint(meta, at + 2, 2 if version < 2 else 4)
        for _ in range(count):
            item_id, at = uint(meta, at, 2 if version < 2 else 4)
            method = 0
            if version in (1, 2):
                method, at = uint(meta, at, 2)
            base, at = uint(meta, at + 2, base_offset_size)
            extents, at = uint(meta, at, 2)
            for index in range(extents):
                at += index_size if version in (1, 2) else 0
                offset, at = uint(meta, at, offset_size)
                length, at = uint(meta, at, length_size)
                if index == 0:
                    locations[item_id] = ItemLocation(method, base + offset, length)
    return locations
