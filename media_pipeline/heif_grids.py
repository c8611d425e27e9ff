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

from media_pipeline.isobmff import MAX_BOX, boxes, item_locations, item_types, top_level, uint

# Where the canvas size starts in the descriptor of each item type that makes its picture on
# a canvas: a grid (version, flags, rows, columns) and an overlay (version, flags, a fill
# colour of four 16-bit values).
_CANVAS_AT = {b"grid": 4, b"iovl": 10}


def _grid_descriptors(meta: bytes) -> list[tuple[bytes, bytes | int]]:
    """The type and where the descriptor is of every `grid` and `iovl` item in a `meta`
    box's payload: the descriptor itself (kept in the box's `idat`) or its offset in the file."""
    idat = next((meta[start:end] for kind, start, end in boxes(meta, 4) if kind == b"idat"), b"")
    types, locations = item_types(meta), item_locations(meta)
    found: list[tuple[bytes, bytes | int]] = []
    for item in sorted(types.keys() & locations.keys()):
        kind, (method, offset, length) = types[item], locations[item]
        if kind not in _CANVAS_AT:
            continue
        if method == 1:
            found.append((kind, idat[offset : offset + length]))
        elif method == 0:
            found.append((kind, offset))
    return found


def _canvas(kind: bytes, descriptor: bytes) -> tuple[int, int]:
    """output_width and output_height of an ImageGrid or ImageOverlay descriptor."""
    at = _CANVAS_AT[kind]
    field = 4 if len(descriptor) > 1 and descriptor[1] & 1 else 2
    if len(descriptor) < at + 2 * field:
        raise ValueError(f"{kind.decode()} descriptor truncated")
    width, at = uint(descriptor, at, field)
    return width, uint(descriptor, at, field)[0]


def largest_grid_canvas(source: BinaryIO) -> tuple[int, int] | None:
    """The widest and tallest canvas any grid item of the file declares (the picture, its
    alpha or another auxiliary image; each side's maximum), or None if it has no grid; the
    stream is left where it was. Raises ValueError for structures too damaged to read."""
    position = source.tell()
    try:
        canvases = []
        for kind, at, size in top_level(source):
            if kind != b"meta":
                continue
            if size > MAX_BOX:
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
