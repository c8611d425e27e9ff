"""Cover variants from a source image: pure functions on bytes, no Django.

The order of operations is what keeps this fast and small:

1. Read only the header and refuse what must not be decoded (not an image, a format we do
   not serve, more pixels than allowed), before any pixel data is touched.
2. Decode at reduced size wherever the codec allows, to the smallest size that still leaves
   headroom over the largest target, so a 48 MP photo never exists in memory at full size:
   JPEG (and MPO) at a DCT scale of 1/2, 1/4 or 1/8 (Pillow's draft mode); WebP scaled while
   libwebp decodes and PNG streamed row by row into a box filter (libvips, because Pillow
   can do neither); GIF and HEIC decoded into their compact native buffer (1 and 3 bytes a
   pixel) and reduced a strip at a time, never widened to Pillow's 4 bytes a pixel at full
   size. AVIF is the one format decoded whole (neither libavif nor dav1d can scale).
3. Resize in the stored orientation, *then* apply the EXIF orientation to the small result:
   rotating the full image first would cost a full-size copy for nothing. (libheif applies a
   HEIC's rotation itself and Pillow then reports orientation 1.)
4. Convert to sRGB, flatten alpha onto white for JPEG (WebP and AVIF keep it), and encode
   with no metadata at all (no EXIF, GPS, ICC or comments leave the pipeline).

Animated WebP, GIF and PNG and multi-picture JPEG (MPO) give their first picture (an APNG
the first frame of its animation, which browsers show, not a default image kept apart).
The source is only ever read. One module, about 600 lines, because the steps above are one
pipeline whose order is the point: split, each part would only make sense beside the others.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import struct
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import BinaryIO, cast

import pillow_heif
import pyvips
from PIL import GifImagePlugin, Image, ImageCms, UnidentifiedImageError

from media_pipeline import formats
from media_pipeline.apng import first_animation_frame
from media_pipeline.av1_frames import holds_av1_items, largest_av1_frame
from media_pipeline.containers import Pieces, count_pieces
from media_pipeline.formats import ACCEPTED_DESCRIPTION, SNIFF_BYTES, sniff
from media_pipeline.heif_grids import largest_grid_canvas
from media_pipeline.png_chunks import without_unusable_metadata
from media_pipeline.specs import OutputFormat, VariantSpec
from workers.errors import ApplicationError

# Pillow's names for the formats in formats.ACCEPTED_DESCRIPTION (pillow-heif reads HEIC and
# HEIF as "HEIF"; Pillow reads AVIF itself).
SUPPORTED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "HEIF", "AVIF"})
# The only Pillow plugins ever tried on an upload (MPO comes through JPEG's): the other
# parsers (forty-odd, rarely used, EPS's running Ghostscript on loading) never see its bytes.
OPENERS = ("JPEG", "PNG", "WEBP", "GIF", "HEIF", "AVIF")
# Decoded at full size by their codec whatever we do afterwards (see decode_reduced), as are
# progressive JPEGs and interlaced PNGs (`_decoded_whole`).
WHOLE_DECODE_FORMATS = frozenset({"HEIF", "AVIF"})
# Decode at least this many times the largest target, so the resampling filter has real
# pixels to average rather than an already-blocky draft.
DRAFT_HEADROOM = 2.0
# Let Pillow pre-shrink by whole factors with `reduce` when the remaining ratio exceeds this.
REDUCING_GAP = 3.0
# Rows converted and reduced at a time from a compact full-size buffer (GIF, HEIC).
STRIP_ROWS = 256
# No side may be longer, whatever the pixel count: libvips reads a PNG in strips of rows, so
# a 10,000,000 x 5 image (50 megapixels, 145 KB of PNG) would need gigabytes for a strip.
MAX_SIDE = 32_768
# A WebP's metadata chunk, or a JPEG's colour profile (all its APP2 pieces), may be at most
# this long: a photo's profile or EXIF is kilobytes, a lookup-table profile a few MiB (one
# over 1 MiB is ignored, as a browser ignores it).
MAX_METADATA = 16 * 2**20
# WebP cannot store a side longer than this: a variant of a very tall or very wide source is
# made smaller than its spec's width rather than not at all.
WEBP_MAX_SIDE = 16_383
CONTAINER_LIMITS = Pieces(
    # A picture has a few dozen segments, chunks or blocks; an animation one a frame.
    count=10_000,
    # A progressive JPEG holds about ten scans (libjpeg's default script); each is decoded
    # over the whole picture, so a file of thousands of tiny scans keeps a worker busy for
    # minutes.
    scans=100,
    # Encoders write no fill bytes or a few; libjpeg and Pillow pass them one at a time.
    stray_bytes=65_536,
)
# A JPEG's scans may go over at most this many 8x8 blocks in all: each scan decodes every
# block of the components it covers, and libjpeg's scripts go over a picture about six times
# (19 million blocks for 50 megapixels of CMYK). Within 100 scans, full ones over such a
# picture took 14 s (88 times over it); this is about 5 s.
MAX_JPEG_SCAN_BLOCKS = 100_000_000
_PIECES = {
    "jpg": "JPEG segments",
    "png": "PNG chunks before its pixels",
    "gif": "GIF blocks before its first picture",
    "webp": "WebP chunks",
}
# libavif's encoder effort (0 slowest .. 10 fastest): near its default quality per byte at a
# fraction of the time for cover-sized images.
AVIF_SPEED = 8
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
_VIPS_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
# Frame markers SOF5-7 and SOF13-15: libjpeg decodes no hierarchical JPEG.
_HIERARCHICAL_JPEG = frozenset({0xC5, 0xC6, 0xC7, 0xCD, 0xCE, 0xCF})
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, RuntimeError, pyvips.Error)


class ImageRejected(ApplicationError, ValueError):
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


def _no_slot(pixels: int) -> AbstractContextManager[object]:
    return nullcontext()


def refuse_oversized_file(size: int, max_bytes: int) -> None:
    """Raise ImageTooLarge for a file of more than `max_bytes` (WebP, HEIC and AVIF are read
    whole into memory before any header check could refuse them)."""
    if size > max_bytes:
        raise ImageTooLarge(
            f"The file is {size / 2**20:.1f} MiB; a cover may be at most "
            f"{max_bytes / 2**20:.1f} MiB."
        )


def render_variants(
    source: BinaryIO,
    specs: Sequence[VariantSpec],
    *,
    max_pixels: int,
    max_bytes: int | None = None,
    whole_decode_slot: Callable[[int], AbstractContextManager[object]] = _no_slot,
) -> list[Variant]:
    """Encode every spec from one decode of `source`; raise ImageRejected for bad input.

    A source longer than `max_bytes` is refused before it is read, one padded with more
    pieces than a picture has before any parser reads it. A source its codec decodes whole
    (`_decoded_whole`: HEIF and AVIF, a progressive JPEG, an interlaced PNG, a WebP
    animation) is decoded inside `whole_decode_slot(pixels)`, which may make it wait for its
    turn (media_pipeline.decode_slots).
    """
    if max_bytes is not None:
        start = source.tell()
        refuse_oversized_file(source.seek(0, io.SEEK_END) - start, max_bytes)
        source.seek(start)
    kind = _kind(source)
    pieces = _refuse_padded_container(source, kind)
    if kind is formats.HEIF and holds_av1_items(source):
        # libavif reads only files whose type names the `avif` brand, and pillow-heif has no
        # AV1 decoder: such a file was refused as "truncated or corrupt", sending the
        # uploader looking for damage that is not there.
        raise UnsupportedFormat(
            "The image is AV1-coded (AVIF) in a HEIF file that does not say it is AVIF (its "
            "file type names no `avif` brand), which cannot be read; save it as AVIF, JPEG or "
            "PNG and upload that."
        )
    if kind is formats.PNG:
        # An oversized or undecodable colour profile is ignored, not the picture refused.
        source = without_unusable_metadata(source)
    _register_heif_opener()
    try:
        image = Image.open(source, formats=OPENERS)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(
            f"The image has far too many pixels; the limit is {max_pixels / 1e6:.1f} megapixels."
        ) from exc
    except (UnidentifiedImageError, *_DECODE_ERRORS) as exc:
        raise _unreadable(source) from exc
    with image:
        if image.format not in SUPPORTED_FORMATS:
            raise UnsupportedFormat(
                f"{image.format} images are not supported; upload a {ACCEPTED_DESCRIPTION}."
            )
        width, height = image.size
        decoded_pixels = width * height
        if image.format == "AVIF":
            _refuse_larger_av1_frames(source, width, height)
        if image.format in WHOLE_DECODE_FORMATS:
            decoded_pixels = _grid_pixels(source, width, height, max_pixels=max_pixels)
        if max(width, height) > MAX_SIDE:
            raise ImageTooLarge(
                f"The image is {width}x{height}; no side may be longer than {MAX_SIDE:,} pixels."
            )
        if width * height > max_pixels:
            raise ImageTooLarge(
                f"The image is {width}x{height} ({width * height / 1e6:.1f} megapixels); "
                f"the limit is {max_pixels / 1e6:.1f} megapixels."
            )
        orientation = _orientation(image)
        sizes = {spec: _stored_size(width, height, spec.width, orientation) for spec in specs}
        if not sizes:
            return []
        slot = whole_decode_slot if _decoded_whole(image, source, pieces) else _no_slot
        try:
            with slot(decoded_pixels):
                base = decode_reduced(image, source, max(sizes.values()))
        except _DECODE_ERRORS as exc:
            # The codec's own words (several lines of libpng, say) stay in the job's log,
            # through the exception's cause; the uploader gets one sentence.
            raise CorruptImage(
                "The image data is truncated or corrupt and cannot be decoded."
            ) from exc
        # A CMYK picture's profile is applied while decoding (decode_reduced): it describes
        # ink, not the RGB pixels that come out.
        icc_profile = None if image.mode == "CMYK" else image.info.get("icc_profile")
        # Inside the `with`: closing the source also releases its decoded pixels.
        return [
            _encode(base, spec, size, orientation=orientation, icc_profile=icc_profile)
            for spec, size in sizes.items()
        ]


def _refuse_larger_av1_frames(source: BinaryIO, width: int, height: int) -> None:
    """libavif gives the size of an AVIF's `ispe` box but decodes the frames its AV1 data
    declares: a small header over a huge frame got past the pixel limit and the slot."""
    try:
        coded = largest_av1_frame(source)
    except ValueError as exc:
        raise CorruptImage("The image data is truncated or corrupt and cannot be decoded.") from exc
    if coded is not None and (coded[0] > width or coded[1] > height):
        raise CorruptImage(
            f"The image's data holds a {coded[0]}x{coded[1]} picture but its header says "
            f"{width}x{height}; the file is damaged or forged."
        )


def _grid_pixels(source: BinaryIO, width: int, height: int, *, max_pixels: int) -> int:
    """The pixels libheif will decode for a picture `width` x `height` as reported.

    libheif decodes a grid or overlay image onto the canvas it declares, whatever its
    `ispe` box (the size Pillow reports) says, and compares the two only afterwards: a small
    header over a gigapixel grid got past the pixel limit and the slot
    (media_pipeline.heif_grids). So a canvas larger than the reported size is held to the
    limits itself, and the slot is charged for it. A real one is larger when a `clap` box
    crops the grid (the size reported is after the crop); libheif also reports the size
    after the picture's rotation (`irot`), as phones write photos taken upright, so a canvas
    that fits either way round is the picture's own."""
    try:
        canvas = largest_grid_canvas(source)
    except ValueError as exc:
        raise CorruptImage("The image data is truncated or corrupt and cannot be decoded.") from exc
    if canvas is None or (canvas[0] <= width and canvas[1] <= height):
        return width * height
    if canvas[0] <= height and canvas[1] <= width:
        return width * height
    if max(canvas) > MAX_SIDE or canvas[0] * canvas[1] > max_pixels:
        raise CorruptImage(
            f"The image is assembled on a {canvas[0]}x{canvas[1]} canvas but its header says "
            f"{width}x{height}; the file is damaged or forged."
        )
    return max(width * height, canvas[0] * canvas[1])


def _decoded_whole(image: Image.Image, source: BinaryIO, pieces: Pieces) -> bool:
    """Whether its codec holds the whole picture whatever the scale asked: HEIF and AVIF
    always; a JPEG of more than one scan keeps every DCT coefficient until its last (two
    bytes a sample: 294 MiB for 7000x7000 at 4:4:4), whether progressive or baseline with
    its components in scans of their own (which Pillow does not call progressive), an
    interlaced PNG its full image, a WebP animation its canvas (`_is_webp_animation`)."""
    return (
        image.format in WHOLE_DECODE_FORMATS
        or (
            image.format in ("JPEG", "MPO")
            and (bool(image.info.get("progressive")) or pieces.scans > 1)
        )
        or (image.format == "PNG" and bool(image.info.get("interlace")))
        or (image.format == "WEBP" and _is_webp_animation(source))
    )


def _is_webp_animation(source: BinaryIO) -> bool:
    """Whether a WebP is an animation (its VP8X chunk's animation flag), one frame or many.

    libvips scales a WebP while decoding only if every frame of an animation fills the
    canvas; encoders store each later frame as the rectangle that changed, so an animation
    is decoded at its canvas size: a 156-byte file with a 16x16 frame on a 7000x7000 canvas
    cost 450 MiB. Pillow's `is_animated` says nothing of a one-frame animation."""
    position = source.tell()
    source.seek(0)
    head = source.read(21)
    source.seek(position)
    return head[12:16] == b"VP8X" and bool(head[20] & 0x02)


def _refuse_padded_container(source: BinaryIO, kind: formats.StoredType) -> Pieces:
    """Refuse, before any parser reads it, a file padded with more pieces than a picture has
    (media_pipeline.containers): Pillow would spend minutes and gigabytes on them. The
    pieces counted, otherwise."""
    pieces = count_pieces(source, kind, limits=CONTAINER_LIMITS)
    if pieces.scans > CONTAINER_LIMITS.scans:
        raise CorruptImage(
            f"The image is a JPEG of more than {CONTAINER_LIMITS.scans} scans (a photo has about "
            "ten); decoding it would take minutes."
        )
    if pieces.scan_blocks > MAX_JPEG_SCAN_BLOCKS:
        raise CorruptImage(
            f"The image is a JPEG whose scans go over its picture "
            f"{pieces.scan_blocks / pieces.blocks:.0f} times (a photo's about six); decoding it "
            "would take too long."
        )
    if pieces.count > CONTAINER_LIMITS.count:
        raise CorruptImage(
            f"The file holds more than {CONTAINER_LIMITS.count:,} {_PIECES[kind.extension]} "
            "(a picture has a few dozen); reading it would take minutes."
        )
    if pieces.stray_bytes > CONTAINER_LIMITS.stray_bytes:
        raise CorruptImage(
            f"The file holds more than {CONTAINER_LIMITS.stray_bytes // 1024} KiB of padding "
            "between the parts of its JPEG picture; reading it would take minutes."
        )
    if pieces.metadata > MAX_METADATA:
        # WebP: Pillow, libwebp's demuxer and libvips each keep copies: 64 MiB of profile in
        # a 600 x 400 picture cost 328 MiB. JPEG: Pillow keeps every APP2 piece and joins
        # them, 60 MiB of profile cost 69 MiB. Metadata this large is no photo's.
        fmt, carried = (
            ("JPEG", "colour profile")
            if kind is formats.JPEG
            else ("WebP", "metadata (a colour profile, EXIF or XMP)")
        )
        raise ImageTooLarge(
            f"The {fmt} file carries "
            f"{pieces.metadata / 2**20:.1f} MiB of {carried}; a photo's is kilobytes, at most "
            f"{MAX_METADATA // 2**20} MiB is taken. Save it without that metadata."
        )
    _refuse_unsupported_jpeg(pieces)
    return pieces


def _refuse_unsupported_jpeg(pieces: Pieces) -> None:
    """Kinds of JPEG that Pillow cannot decode, named: they were refused as "truncated or
    corrupt", which sent the uploader looking for damage that is not there."""
    if pieces.frame and pieces.precision != 8:
        raise UnsupportedFormat(
            f"The image is a JPEG of {pieces.precision}-bit samples, which cannot be read; "
            "save it as an ordinary 8-bit JPEG or as PNG and upload that."
        )
    if pieces.frame in _HIERARCHICAL_JPEG:
        raise UnsupportedFormat(
            "The image is a hierarchical JPEG, which cannot be read; save it as an ordinary "
            "JPEG or as PNG and upload that."
        )


def _kind(source: BinaryIO) -> formats.StoredType:
    """What the file's first bytes say it is; the stream is left where it was."""
    position = source.tell()
    source.seek(0)
    kind = sniff(source.read(SNIFF_BYTES))
    source.seek(position)
    return kind


def _unreadable(source: BinaryIO) -> ImageRejected:
    if _kind(source).is_image:
        # WebP, HEIC and AVIF are parsed whole on opening, so damage shows up here.
        return CorruptImage("The image data is truncated or corrupt and cannot be decoded.")
    return NotAnImage(
        f"The file is not an image (or not one we can read); upload a {ACCEPTED_DESCRIPTION}."
    )


@functools.cache
def _register_heif_opener() -> None:
    # Once per process: Image.open then recognises HEIC/HEIF. Embedded thumbnails are never
    # used (they are smaller than our variants and may differ from the picture).
    pillow_heif.register_heif_opener(thumbnails=False)


def _orientation(image: Image.Image) -> int:
    """The picture's EXIF orientation, read as browsers read it: from its EXIF alone.

    Not `getexif`: PNG's decodes the whole image to look for an EXIF chunk after the pixel
    data, and every one falls back to an XMP packet's `tiff:Orientation`, which browsers do
    not apply: a picture an editor had turned upright, leaving that XMP behind, came out
    turned beside its original. (AVIF's `irot` and `imir` come as EXIF from Pillow.)
    """
    exif = image.info.get("exif")
    if not exif:
        return 1
    try:
        parsed = Image.Exif()
        parsed.load(exif)
        value = parsed.get(ORIENTATION_TAG, 1)
    except (SyntaxError, ValueError, OSError, struct.error):
        # Unreadable EXIF is treated as absent: the pixels are still fine. (Pillow's EXIF
        # reader lets struct.error out of an EXIF cut short in its header.)
        return 1
    return value if isinstance(value, int) and value in range(1, 9) else 1


def _stored_size(width: int, height: int, target_width: int, orientation: int) -> tuple[int, int]:
    """The size to resize to, in the stored (not yet rotated) orientation.

    The spec's width is the width of the upright image, which for orientations 5-8 is the
    stored height. Never upscales, and no side is longer than every output format can store.
    """
    upright_width = height if orientation >= 5 else width
    scale = min(1.0, target_width / upright_width, WEBP_MAX_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def decode_reduced(image: Image.Image, source: BinaryIO, largest: tuple[int, int]) -> Image.Image:
    """The source's first picture in RGB or RGBA, reduced as far as `largest` allows."""
    wanted = (math.ceil(largest[0] * DRAFT_HEADROOM), math.ceil(largest[1] * DRAFT_HEADROOM))
    # The whole factor by which the source can shrink and still cover `wanted`.
    factor = max(1, min(image.width // wanted[0], image.height // wanted[1]))
    if image.format in ("JPEG", "MPO"):
        image.draft(None, wanted)
    elif image.format == "PNG" and (first := first_animation_frame(source)):
        return _on_canvas(
            _working_mode(_decode_with_vips(first.png, "PNG", factor, image.width)),
            first.box,
            image.size,
            factor,
        )
    elif image.format in ("PNG", "WEBP"):
        source.seek(0)
        return _working_mode(_decode_with_vips(source, image.format, factor, image.width))
    elif image.format == "GIF":
        # The first picture's place on the logical screen.
        frame = image.dispose_extent if isinstance(image, GifImagePlugin.GifImageFile) else None
        image.load()  # one byte a pixel: palette indices
        return _reduce_in_strips(image.size, factor, _gif_strips(image, frame))
    elif image.format == "HEIF":
        source.seek(0)
        return _decode_heif(source, factor)
    image.load()
    if image.mode == "CMYK":
        return _cmyk_to_srgb(image, image.info.get("icc_profile"))
    return _working_mode(image)


def _on_canvas(
    frame: Image.Image, box: tuple[int, int, int, int], size: tuple[int, int], factor: int
) -> Image.Image:
    """An animation's first frame, reduced by `factor`, in its place on a canvas of `size`
    (reduced alike) that is transparent elsewhere, as browsers draw it."""
    if box == (0, 0, *size):
        return frame
    canvas = Image.new("RGBA", (math.ceil(size[0] / factor), math.ceil(size[1] / factor)))
    canvas.paste(frame.convert("RGBA"), (box[0] // factor, box[1] // factor))
    return canvas


def _cmyk_to_srgb(image: Image.Image, icc_profile: bytes | None) -> Image.Image:
    """RGB through the picture's own CMYK profile (the press it was separated for), as a
    browser shows it; naively (255 - C, ...) without one or with one littleCMS refuses."""
    if icc_profile:
        try:
            converted = ImageCms.profileToProfile(
                image,
                ImageCms.ImageCmsProfile(io.BytesIO(icc_profile)),
                _SRGB,
                outputMode="RGB",
                renderingIntent=ImageCms.Intent.PERCEPTUAL,
            )
        except (ImageCms.PyCMSError, OSError):
            pass  # a damaged or non-CMYK profile: ignored, as a browser ignores it
        else:
            assert converted is not None
            return converted
    return image.convert("RGB")


def _decode_with_vips(source: BinaryIO, fmt: str, factor: int, width: int) -> Image.Image:
    """WebP scaled by libwebp while decoding; PNG read row by row into a box filter."""
    pyvips.cache_set_max(0)  # a long-lived worker must not keep decoded images around
    vips_source = pyvips.SourceCustom()
    vips_source.on_read(source.read)
    vips_source.on_seek(source.seek)
    if fmt == "WEBP":
        picture = pyvips.Image.webpload_source(vips_source, scale=1 / factor, fail_on="error")
        # An animation libvips could not scale (see _is_webp_animation) comes at its canvas
        # size: shrunk here, so that Pillow never gets a full-size copy of it.
        shrink = factor if picture.width == width else 1
    else:
        picture = pyvips.Image.pngload_source(vips_source, access="sequential", fail_on="error")
        shrink = factor
    if shrink > 1:
        has_alpha = picture.hasalpha()
        if has_alpha:
            # Average colours weighted by opacity, as Pillow's resize does.
            picture = picture.premultiply()
        picture = picture.shrink(shrink, shrink)
        if has_alpha:
            picture = picture.unpremultiply()
    if picture.interpretation in ("rgb16", "grey16"):
        picture = picture / 257
    picture = picture.cast("uchar")
    size = (picture.width, picture.height)
    return Image.frombytes(_VIPS_MODES[picture.bands], size, picture.write_to_memory())


def _decode_heif(source: BinaryIO, factor: int) -> Image.Image:
    """libheif's decoded buffer (3 or 4 bytes a pixel, rotation applied), reduced in strips."""
    heif = pillow_heif.open_heif(source, convert_hdr_to_8bit=True)
    buffer, stride, mode = heif.data, heif.stride, heif.mode
    width = heif.size[0]

    def strip(box: tuple[int, int, int, int]) -> Image.Image:
        top, bottom = box[1], box[3]
        # A view, not a copy; Pillow reads any buffer (its stubs name only bytes).
        rows = cast(bytes, memoryview(buffer)[top * stride : bottom * stride])
        return Image.frombuffer(mode, (width, bottom - top), rows, "raw", mode, stride, 1)

    return _reduce_in_strips(heif.size, factor, strip)


def _gif_strips(
    image: Image.Image, frame: tuple[int, int, int, int] | None
) -> Callable[[tuple[int, int, int, int]], Image.Image]:
    """Strips of a GIF's first picture as browsers show it: transparent wherever the picture
    does not cover the logical screen. Pillow fills the rest with palette entry 0, opaque
    unless it is the transparent one, so a 1x1 picture on a 7000x7000 screen came out a
    square of that colour."""
    if frame is None or tuple(frame) == (0, 0, *image.size):
        return image.crop

    def strip(box: tuple[int, int, int, int]) -> Image.Image:
        shown = Image.new("RGBA", (box[2] - box[0], box[3] - box[1]))  # transparent
        left, top = max(frame[0], box[0]) - box[0], max(frame[1], box[1]) - box[1]
        right, bottom = min(frame[2], box[2]) - box[0], min(frame[3], box[3]) - box[1]
        if left < right and top < bottom:
            inside = image.crop((left + box[0], top + box[1], right + box[0], bottom + box[1]))
            shown.paste(_working_mode(inside).convert("RGBA"), (left, top))
        return shown

    return strip


def _reduce_in_strips(
    size: tuple[int, int],
    factor: int,
    strip: Callable[[tuple[int, int, int, int]], Image.Image],
) -> Image.Image:
    """Shrink by `factor` (box filter) a strip at a time: only strips exist at full width.

    Strips are whole multiples of `factor` rows, so no box straddles two of them and the
    result equals `reduce(factor)` of the whole picture.
    """
    width, height = size
    rows = max(1, STRIP_ROWS // factor) * factor
    reduced: Image.Image | None = None
    for top in range(0, height, rows):
        piece = _working_mode(strip((0, top, width, min(height, top + rows))))
        if factor > 1:
            piece = piece.reduce(factor)
        if reduced is None:
            reduced = Image.new(piece.mode, (math.ceil(width / factor), math.ceil(height / factor)))
        reduced.paste(piece, (0, top // factor))
    assert reduced is not None
    return reduced


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
    elif spec.format is OutputFormat.WEBP:
        image.save(buffer, "WEBP", quality=spec.quality, method=4)
    else:
        image.save(buffer, "AVIF", quality=spec.quality, speed=AVIF_SPEED)
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
    except (ImageCms.PyCMSError, OSError):
        # A broken or non-RGB profile (littleCMS refuses to open a damaged one with OSError):
        # treat the pixels as sRGB, as a browser would.
        return image
    assert converted is not None
    return converted
