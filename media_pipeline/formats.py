"""Which uploads are accepted, and what a stored file is, from its first bytes alone.

The uploader's file name and Content-Type are never trusted: the stored original's
extension and the type it is served with come from `sniff` (magic numbers, no decoding).
Whether the picture can really be decoded is decided later by the worker (`resize`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

# What the upload form, docs/covers.md and the worker's refusals name, in this order.
ACCEPTED_DESCRIPTION = "JPEG, PNG, WebP, GIF, HEIC/HEIF or AVIF"
# Bytes enough for every signature below (an ISO-BMFF `ftyp` box lists its brands early).
SNIFF_BYTES = 64


@dataclass(frozen=True)
class StoredType:
    extension: str  # without the dot
    content_type: str

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


JPEG = StoredType("jpg", "image/jpeg")
PNG = StoredType("png", "image/png")
GIF = StoredType("gif", "image/gif")
WEBP = StoredType("webp", "image/webp")
HEIC = StoredType("heic", "image/heic")
HEIF = StoredType("heif", "image/heif")
AVIF = StoredType("avif", "image/avif")
UNKNOWN = StoredType("bin", "application/octet-stream")
STORED_TYPES = {t.extension: t for t in (JPEG, PNG, GIF, WEBP, HEIC, HEIF, AVIF, UNKNOWN)}

_AVIF_BRANDS = {b"avif", b"avis"}
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"}
_HEIF_BRANDS = {b"mif1", b"msf1"}


def sniff(head: bytes) -> StoredType:
    """The type of a file from its first `SNIFF_BYTES` bytes; UNKNOWN for anything else."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[4:8] == b"ftyp":
        return _sniff_ftyp(head)
    return UNKNOWN


def _sniff_ftyp(head: bytes) -> StoredType:
    box_size = int.from_bytes(head[:4], "big")
    major = head[8:12]
    # Compatible brands follow the major brand and minor version, four bytes each.
    compatible = {head[i : i + 4] for i in range(16, min(box_size, len(head)) - 3, 4)}
    for brands in ({major}, compatible):
        if brands & _AVIF_BRANDS:
            return AVIF
        if brands & _HEIC_BRANDS:
            return HEIC
    if ({major} | compatible) & _HEIF_BRANDS:
        return HEIF
    return UNKNOWN


def stored_type_of(name: str) -> StoredType:
    """The type a stored file is served as, from the extension `sniff` gave its name."""
    return STORED_TYPES.get(PurePosixPath(name).suffix.lower().lstrip("."), UNKNOWN)
