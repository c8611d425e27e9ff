"""Cover variants from a source image: pure functions on bytes, no Django.

The order of operations is what keeps this fast and small:

1. Read only the header and refuse what must not be decoded (not an image, a format we do
   not serve, more pixels than allowed), before any pixel data is touched.
2. Decode a JPEG at the smallest DCT scale (1/2, 1/4, 1/8) that still leaves headroom over
   the largest target; a 48 MP photo then never exists in memory at full size.
3. Resize in the stored orientation, *then* apply the EXIF orientation to the small result:
   rotating the full image first would cost a full-size copy for nothing.
4. Convert to sRGB, flatten alpha onto white for JPEG (WebP keeps it), and encode with no
   metadata at all (no EXIF, GPS, ICC or comments leave the pipeline).

The source is only ever read.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image, ImageCms, UnidentifiedImageError

from media_pipeline.specs import OutputFormat, VariantSpec

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
# Decode at least this many times the largest target, so the resampling filter has real
# pixels to average rather than an already-blocky draft.
DRAFT_HEADROOM = 2.0
# Let Pillow pre-shrink by whole factors with `reduce` when the remaining ratio exceeds this.
REDUCING_GAP = 3.0
ORIENTATION_TAG = 0x0112
# EXIF orientation → the transpose that makes the image upright (as ImageOps.exif_transpose).
UPRIGHT: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


class ImageRejected(ValueError):
    """The source cannot be turned into variants; `str(exc)` is shown to the uploader."""


class NotAnImage(ImageRejected):
    pass


class UnsupportedFormat(ImageRejected):
    pass


class ImageTooLarge(ImageRejected):
    pass


class CorruptImage(ImageRejected):
    pass


@dataclass(frozen=True)
class Variant:
    spec: VariantSpec
    data: bytes
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return self.spec.content_type

    @property
    def extension(self) -> str:
        return self.spec.extension


def sha256_of(stream: BinaryIO, chunk_size: int = 1 << 20) -> str:
    """Hash a stream from its current position without holding it in memory."""
    digest = hashlib.sha256()
    while chunk := stream.read(chunk_size):
        digest.update(chunk)
    return digest.hexdigest()


def variant_name(source_hash: str, spec: VariantSpec, *, prefix: str = "covers/variants") -> str:
    """Content-addressed storage name: the same source and spec always give the same name."""
    key = hashlib.sha256(f"{source_hash}:{spec.fingerprint}".encode()).hexdigest()[:40]
    return f"{prefix}/{key[:2]}/{key}.{spec.extension}"


def render_variants(
    source: BinaryIO, specs: Sequence[VariantSpec], *, max_pixels: int
) -> list[Variant]:
    """Encode every spec from one decode of `source`; raise ImageRejected for bad input."""
    try:
        image = Image.open(source)
    except UnidentifiedImageError as exc:
        raise NotAnImage(
            "The file is not an image (or not one we can read); upload a JPEG, PNG or WebP."
        ) from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(
            f"The image has far too many pixels; the limit is {max_pixels / 1e6:.1f} megapixels."
        ) from exc
    with image:
        if image.format not in SUPPORTED_FORMATS:
            raise UnsupportedFormat(
                f"{image.format} images are not supported; upload a JPEG, PNG or WebP."
            )
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLarge(
                f"The image is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
                f"the limit is {max_pixels / 1e6:.1f} megapixels."
            )
        orientation = _orientation(image)
        sizes = {spec: _stored_size(width, height, spec.width, orientation) for spec in specs}
        if not sizes:
            return []
        try:
            base = _decode(image, max(sizes.values()))
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise CorruptImage(
                f"The image data is truncated or corrupt and cannot be decoded ({exc})."
            ) from exc
        icc_profile = image.info.get("icc_profile")
        # Inside the `with`: closing the source also releases its decoded pixels.
        return [
            _encode(base, spec, size, orientation=orientation, icc_profile=icc_profile)
            for spec, size in sizes.items()
        ]


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
    except (SyntaxError, ValueError, OSError):
        # Unreadable EXIF is treated as absent: the pixels are still fine.
        return 1
    return value if isinstance(value, int) and value in range(1, 9) else 1


def _stored_size(width: int, height: int, target_width: int, orientation: int) -> tuple[int, int]:
    """The size to resize to, in the stored (not yet rotated) orientation.

    The spec's width is the width of the upright image, which for orientations 5-8 is the
    stored height. Never upscales.
    """
    upright_width = height if orientation >= 5 else width
    scale = min(1.0, target_width / upright_width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _decode(image: Image.Image, largest: tuple[int, int]) -> Image.Image:
    if image.format == "JPEG":
        image.draft(
            None, (math.ceil(largest[0] * DRAFT_HEADROOM), math.ceil(largest[1] * DRAFT_HEADROOM))
        )
    image.load()
    return _working_mode(image)


def _working_mode(image: Image.Image) -> Image.Image:
    """RGB or RGBA, so resampling is never done on palette indices and alpha survives."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if image.mode.startswith("I;16") or image.mode == "I":
        # 16-bit greyscale: scale to 8 bits rather than clip everything above 255 to white.
        image = image.convert("I").point(lambda value: value * (1 / 257)).convert("L")
    if has_alpha:
        return image if image.mode == "RGBA" else image.convert("RGBA")
    return image if image.mode == "RGB" else image.convert("RGB")


def _encode(
    base: Image.Image,
    spec: VariantSpec,
    size: tuple[int, int],
    *,
    orientation: int,
    icc_profile: bytes | None,
) -> Variant:
    image = base.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    if orientation in UPRIGHT:
        image = image.transpose(UPRIGHT[orientation])
    if icc_profile:
        image = _to_srgb(image, icc_profile)
    if spec.format is OutputFormat.JPEG and image.mode == "RGBA":
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    # Nothing from the source's metadata (EXIF with GPS, ICC, XMP, comments) is written.
    image.info = {}
    buffer = io.BytesIO()
    if spec.format is OutputFormat.JPEG:
        image.save(buffer, "JPEG", quality=spec.quality, optimize=True, progressive=True)
    else:
        image.save(buffer, "WEBP", quality=spec.quality, method=4)
    return Variant(spec=spec, data=buffer.getvalue(), width=image.width, height=image.height)


def _to_srgb(image: Image.Image, icc_profile: bytes) -> Image.Image:
    """Convert to sRGB so colours survive dropping the profile (browsers assume sRGB)."""
    try:
        source_profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        converted = ImageCms.profileToProfile(
            image,
            source_profile,
            _SRGB,
            outputMode=image.mode,
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
        )
    except ImageCms.PyCMSError:
        # A broken or non-RGB profile: treat the pixels as sRGB, as a browser would.
        return image
    assert converted is not None
    return converted
