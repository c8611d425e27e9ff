"""Cover variant specs: data, not code. Add, drop or change a spec here and re-run the
backfill; names are content-addressed by source and spec, so only what changed is written."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OutputFormat(StrEnum):
    JPEG = "JPEG"
    WEBP = "WEBP"
    # Off by default: add a spec with this format to COVER_SPECS to make AVIF variants too.
    # Measured on the bench photo: a quality-60 AVIF is about the size of a quality-80 WebP,
    # and adding an 800 px AVIF to the four variants nearly halves throughput (bench/images.py).
    AVIF = "AVIF"


EXTENSIONS = {OutputFormat.JPEG: "jpg", OutputFormat.WEBP: "webp", OutputFormat.AVIF: "avif"}
CONTENT_TYPES = {
    OutputFormat.JPEG: "image/jpeg",
    OutputFormat.WEBP: "image/webp",
    OutputFormat.AVIF: "image/avif",
}

# Bumped when the resize code changes its output for the same spec, so new names are used
# and old files are not mistaken for current ones.
PIPELINE_VERSION = 1


@dataclass(frozen=True)
class VariantSpec:
    name: str  # stable key, e.g. "w200-jpeg"; one variant per (course, name)
    width: int  # target width in pixels of the upright image; never upscaled
    format: OutputFormat
    quality: int

    def __post_init__(self) -> None:
        if not 16 <= self.width <= 4096:
            raise ValueError(f"spec {self.name}: width {self.width} out of range")
        if not 1 <= self.quality <= 100:
            raise ValueError(f"spec {self.name}: quality {self.quality} out of range")

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]

    @property
    def fingerprint(self) -> str:
        """Everything that determines the output bytes for a given source."""
        return f"v{PIPELINE_VERSION}:{self.width}:{self.format}:{self.quality}"


COVER_SPECS: tuple[VariantSpec, ...] = (
    VariantSpec("w200-jpeg", 200, OutputFormat.JPEG, quality=82),
    VariantSpec("w200-webp", 200, OutputFormat.WEBP, quality=80),
    VariantSpec("w800-jpeg", 800, OutputFormat.JPEG, quality=82),
    VariantSpec("w800-webp", 800, OutputFormat.WEBP, quality=80),
)
