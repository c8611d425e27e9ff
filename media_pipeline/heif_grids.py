"""The largest canvas a HEIC/HEIF or AVIF file's grid images declare, read without decoding.

A phone's HEIC is a `grid` item: tiles (512 px) pasted onto a canvas whose size the grid's
own data gives (ImageGrid, ISO/IEC 23008-12 6.6.2.3). Pillow and pillow-heif report the
size of the item's `ispe` box; libheif allocates and decodes the canvas the grid declares
(up to a gigapixel) and only then finds the two differ: a 43 KB file whose `ispe` said
100 x 100 over a grid of 31 x 31 tiles of 1024 px took 1.5 GiB and 5 s, past the pixel
limit and outside the whole-decode slot; an overlay (`iovl`: pictures placed on a canvas of
its own size) is decoded the same way, and a 479-byte one took 1.2 GiB. So the pixel checks
also use the canvas of every grid and overlay in the file (the picture's, and its alpha's or
another auxiliary image's, which libheif decodes with it): none may be larger than the
picture its header describes.
"""

from __future__ import annotations

from typing import BinaryIO

from media_pipeline.av1_frames import _MAX_BOX, _boxes, _top_level, _u

# Where the canvas size starts in the descriptor of each item type that makes its picture on
# a canvas: a grid (version, flags, rows, columns) and an overlay (version, flags, a fill
# colour of four 16-bit values).
_CANVAS_AT = {b"grid": 4, b"iovl": 10}


def _grid_descriptors(meta: bytes) -> list[tuple[bytes, bytes | int]]:
    """The type and where the descriptor is of every `grid` and `iovl` item in a `meta`
    box's payload: the descriptor itself (kept in the box's `idat`) or its offset in the file."""
    grids: dict[int, bytes] = {}
    # item id → (construction method, first extent's offset, its length)
    locations: dict[int, tuple[int, int, int]] = {}
    idat = b""
    for kind, start, end in _boxes(meta, 4):  # meta is a FullBox
        if kind == b"idat":
            idat = meta[start:end]
        elif kind == b"iinf":
            version = meta[start]
            for entry, at, _ in _boxes(meta, start + (6 if version == 0 else 8), end):
                if entry == b"infe" and meta[at] >= 2:
                    item_id, at = _u(meta, at + 4, 2 if meta[at] == 2 else 4)
                    if meta[at + 2 : at + 6] in _CANVAS_AT:
                        grids[item_id] = meta[at + 2 : at + 6]
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
                for index in range(extents):
                    at += index_size if version in (1, 2) else 0
                    offset, at = _u(meta, at, offset_size)
                    length, at = _u(meta, at, length_size)
                    if index == 0:
                        locations[item_id] = (method, base + offset, length)
    found: list[tuple[bytes, bytes | int]] = []
    for item in sorted(grids.keys() & locations.keys()):
        method, offset, length = locations[item]
        if method == 1:
            found.append((grids[item], idat[offset : offset + length]))
        elif method == 0:
            found.append((grids[item], offset))
    return found


def _canvas(kind: bytes, descriptor: bytes) -> tuple[int, int]:
    """output_width and output_height of an ImageGrid or ImageOverlay descriptor."""
    at = _CANVAS_AT[kind]
    field = 4 if len(descriptor) > 1 and descriptor[1] & 1 else 2
    if len(descriptor) < at + 2 * field:
        raise ValueError(f"{kind.decode()} descriptor truncated")
    width, at = _u(descriptor, at, field)
    return width, _u(descriptor, at, field)[0]


def largest_grid_canvas(source: BinaryIO) -> tuple[int, int] | None:
    """The widest and tallest canvas any grid item of the file declares (the picture, its
    alpha or another auxiliary image; each side's maximum), or None if it has no grid; the
    stream is left where it was. Raises ValueError for structures too damaged to read."""
    position = source.tell()
    try:
        canvases = []
        for kind, at, size in _top_level(source):
            if kind != b"meta":
                continue
            if size > _MAX_BOX:
                raise ValueError(f"meta box of {size} bytes")
            source.seek(at)
            for kind, where in _grid_descriptors(source.read(size)):
                if isinstance(where, int):
                    source.seek(where)
                    where = source.read(_CANVAS_AT[kind] + 8)
                canvases.append(_canvas(kind, where))
    except IndexError as exc:
        raise ValueError("HEIF structure truncated") from exc
    finally:
        source.seek(position)
    if not canvases:
        return None
    return max(width for width, _ in canvases), max(height for _, height in canvases)
