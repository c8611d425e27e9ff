"""The resize module on real Pillow-encoded images; no Django, no database."""

from __future__ import annotations

import io
import subprocess
import sys
import zlib
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import pyvips
from PIL import Image, ImageCms, PngImagePlugin

from media_pipeline.resize import (
    STRIP_ROWS,
    CorruptImage,
    ImageTooLarge,
    NotAnImage,
    UnsupportedFormat,
    _orientation,
    _reduce_in_strips,
    _register_heif_opener,
    decode_reduced,
    render_variants,
    sha256_of,
    variant_name,
)
from media_pipeline.samples import jpeg_bytes, photo
from media_pipeline.specs import COVER_SPECS, OutputFormat, VariantSpec
from tests.media_pipeline.images import (
    BLUE,
    GREEN,
    RED,
    STORE_AS,
    WHITE,
    apng_with_a_default_image_apart,
    assert_no_metadata,
    cmyk_icc_bytes,
    exif_bytes,
    gif_picture_on_a_screen,
    heic_grid,
    heic_overlay,
    icc_bytes,
    ispe_forged,
    padded_icc_bytes,
    photo_file,
    png_chunk,
    png_header_only,
    png_with_chunk_before_pixels,
    quadrants,
    webp_animation,
    webp_one_small_frame_on_a_canvas,
    zeros_deflated,
)

LIMIT = 50_000_000
JPEG_200 = VariantSpec("w200-jpeg", 200, OutputFormat.JPEG, quality=90)
WEBP_200 = VariantSpec("w200-webp", 200, OutputFormat.WEBP, quality=90)


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def close_to(pixel: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 40) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=False))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_upright(orientation: int) -> None:
    upright = quadrants()
    stored = upright.transpose(STORE_AS[orientation]) if orientation in STORE_AS else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    source = jpeg_bytes(stored, quality=95, exif=exif.tobytes())

    [variant] = render_variants(io.BytesIO(source), [JPEG_200], max_pixels=LIMIT)

    image = decode(variant.data).convert("RGB")
    assert image.size == (200, 133) == (variant.width, variant.height)
    assert close_to(image.getpixel((50, 33)), RED)  # type: ignore[arg-type]
    assert close_to(image.getpixel((150, 33)), GREEN)  # type: ignore[arg-type]
    assert close_to(image.getpixel((50, 100)), BLUE)  # type: ignore[arg-type]
    assert close_to(image.getpixel((150, 100)), WHITE)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "JPEG"])
def test_exif_cut_short_in_its_header_is_ignored_not_the_job_crashed(fmt: str) -> None:
    # A TIFF header with no offset to its first directory: Pillow's EXIF reader let
    # struct.error out, and a PNG or WebP carrying it failed its job with a traceback.
    buffer = io.BytesIO()
    quadrants().save(buffer, fmt, exif=b"Exif\0\0MM\0*")
    [variant] = render_variants(io.BytesIO(buffer.getvalue()), [JPEG_200], max_pixels=LIMIT)
    image = decode(variant.data).convert("RGB")
    assert (variant.width, variant.height) == (200, 133)
    assert close_to(image.getpixel((50, 33)), RED)  # type: ignore[arg-type]


_XMP_TURNED = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
    b'22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
    b'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_an_orientation_only_in_xmp_is_not_applied_as_browsers_do_not(fmt: str) -> None:
    # Pillow's getexif falls back to XMP's tiff:Orientation; browsers read EXIF alone, so
    # the cover came out turned a quarter beside the original the uploader saw upright.
    buffer = io.BytesIO()
    if fmt == "PNG":
        text = PngImagePlugin.PngInfo()
        text.add_itxt("XML:com.adobe.xmp", _XMP_TURNED.decode())
        quadrants().save(buffer, fmt, pnginfo=text)
    else:
        quadrants().save(buffer, fmt, xmp=_XMP_TURNED)
    [variant] = render_variants(io.BytesIO(buffer.getvalue()), [JPEG_200], max_pixels=LIMIT)
    image = decode(variant.data).convert("RGB")
    assert (variant.width, variant.height) == (200, 133)
    assert close_to(image.getpixel((50, 33)), RED)  # type: ignore[arg-type]
    assert close_to(image.getpixel((150, 100)), WHITE)  # type: ignore[arg-type]


def rgba_png() -> bytes:
    image = Image.new("RGBA", (400, 200), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (200, 0, 400, 200))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_rgba_png_becomes_jpeg_flattened_onto_white() -> None:
    [variant] = render_variants(io.BytesIO(rgba_png()), [JPEG_200], max_pixels=LIMIT)
    image = decode(variant.data)
    assert image.format == "JPEG" and image.mode == "RGB"
    assert close_to(image.getpixel((20, 50)), WHITE)  # type: ignore[arg-type]
    assert close_to(image.getpixel((180, 50)), RED)  # type: ignore[arg-type]


def test_rgba_png_becomes_webp_keeping_its_alpha() -> None:
    [variant] = render_variants(io.BytesIO(rgba_png()), [WEBP_200], max_pixels=LIMIT)
    image = decode(variant.data)
    assert image.format == "WEBP" and image.mode == "RGBA"
    assert image.getpixel((20, 50))[3] == 0  # type: ignore[index]
    assert close_to(image.getpixel((180, 50)), (255, 0, 0, 255))  # type: ignore[arg-type]


def test_palette_png_with_transparency_keeps_alpha_and_is_not_resampled_as_indices() -> None:
    image = Image.new("P", (400, 200), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (200, 0, 400, 200))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", transparency=0)

    jpeg, webp = render_variants(
        io.BytesIO(buffer.getvalue()), [JPEG_200, WEBP_200], max_pixels=LIMIT
    )

    assert close_to(decode(jpeg.data).getpixel((20, 50)), WHITE)  # type: ignore[arg-type]
    assert decode(webp.data).getpixel((20, 50))[3] == 0  # type: ignore[index]


def test_sixteen_bit_greyscale_png_keeps_its_tones() -> None:
    image = Image.new("I;16", (400, 200), 32768)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    [variant] = render_variants(io.BytesIO(buffer.getvalue()), [JPEG_200], max_pixels=LIMIT)
    red, green, blue = decode(variant.data).getpixel((100, 50))  # type: ignore[misc]
    assert 110 < red < 145
    assert abs(red - green) < 4 and abs(red - blue) < 4


def test_metadata_is_stripped_and_output_format_matches_extension_and_type() -> None:
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    exif[0x0112] = 1
    exif.get_ifd(0x8825)[2] = (52.0, 13.0, 0.0)  # GPS latitude
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = jpeg_bytes(photo(1000, 750), exif=exif.tobytes(), icc_profile=icc, comment=b"secret")

    variants = render_variants(io.BytesIO(source), COVER_SPECS, max_pixels=LIMIT)

    assert [v.spec.name for v in variants] == [spec.name for spec in COVER_SPECS]
    for variant in variants:
        image = decode(variant.data)
        assert image.format == variant.spec.format.value
        assert Image.MIME[image.format] == variant.content_type
        assert variant.extension == {"JPEG": "jpg", "WEBP": "webp"}[image.format]
        assert image.width == variant.spec.width == variant.width
        assert not image.getexif()
        assert "icc_profile" not in image.info
        assert "comment" not in image.info
        assert b"CameraMaker" not in variant.data and b"secret" not in variant.data


def test_source_with_an_icc_profile_is_colour_converted_not_broken() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = jpeg_bytes(Image.new("RGB", (400, 200), (0, 200, 0)), quality=95, icc_profile=srgb)
    [variant] = render_variants(io.BytesIO(source), [JPEG_200], max_pixels=LIMIT)
    assert close_to(decode(variant.data).getpixel((100, 50)), (0, 200, 0), tolerance=6)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize(
    "profile", [b"\0" * 200, b"acsp" * 50, b""], ids=["zeros", "garbage", "empty"]
)
def test_a_damaged_colour_profile_is_ignored_as_a_browser_would(fmt: str, profile: bytes) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (400, 200), (0, 200, 0)).save(buffer, fmt, icc_profile=profile)
    [variant] = render_variants(io.BytesIO(buffer.getvalue()), [JPEG_200], max_pixels=LIMIT)
    assert close_to(decode(variant.data).getpixel((100, 50)), (0, 200, 0), tolerance=6)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_colour_profile_over_a_mebibyte_is_ignored_not_the_picture_refused(fmt: str) -> None:
    """Pillow refuses a PNG whose profile inflates past 1 MiB; the JPEG's is split over
    many APP2 segments, the WebP's is one ICCP chunk. Each gives its picture, as sRGB."""
    buffer = io.BytesIO()
    green = Image.new("RGB", (400, 200), (0, 200, 0))
    green.save(buffer, fmt, icc_profile=padded_icc_bytes(8 << 20))
    [variant] = render_variants(io.BytesIO(buffer.getvalue()), [JPEG_200], max_pixels=LIMIT)
    assert close_to(decode(variant.data).getpixel((100, 50)), (0, 200, 0), tolerance=6)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "chunk",
    [
        png_chunk(b"iCCP", b"sRGB\0\0" + zeros_deflated(2 << 20)),
        png_chunk(b"iCCP", b"sRGB\0\x07" + zlib.compress(icc_bytes())),
        png_chunk(b"zTXt", b"Comment\0\0" + zeros_deflated(2 << 20)),
        png_chunk(b"iTXt", b"Comment\0\x01\0en\0\0" + zeros_deflated(2 << 20)),
    ],
    ids=["profile-over-limit", "profile-unknown-compression", "ztxt-over-limit", "itxt-over-limit"],
)
def test_png_metadata_pillow_cannot_read_is_ignored_not_the_picture_refused(chunk: bytes) -> None:
    source = png_with_chunk_before_pixels(Image.new("RGB", (400, 200), (0, 200, 0)), chunk)
    [variant] = render_variants(io.BytesIO(source), [JPEG_200], max_pixels=LIMIT)
    assert close_to(decode(variant.data).getpixel((100, 50)), (0, 200, 0), tolerance=6)  # type: ignore[arg-type]


def in_a_fresh_process(code: str, *, timeout: float) -> str:
    """What `code` prints, run by a new Python in the project's directory: its memory and
    time are its own, not this session's."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=timeout,
    ).stdout


_PROFILE_BOMB = """
import io, resource, sys
from PIL import Image
from media_pipeline.resize import render_variants
from media_pipeline.specs import OutputFormat, VariantSpec
from tests.media_pipeline.images import png_chunk, png_with_chunk_before_pixels, zeros_deflated
chunk = png_chunk(b"iCCP", b"sRGB\\0\\0" + zeros_deflated(600 << 20))
source = png_with_chunk_before_pixels(Image.new("RGB", (400, 200), (0, 200, 0)), chunk)
spec = VariantSpec("w200-jpeg", 200, OutputFormat.JPEG, quality=90)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
[variant] = render_variants(io.BytesIO(source), [spec], max_pixels=50_000_000)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, variant.width)
"""


def test_a_colour_profile_inflating_to_hundreds_of_mebibytes_is_never_inflated() -> None:
    """600 KiB of deflated zeros in an iCCP chunk: libvips would inflate all 600 MiB. The
    growth in peak memory is measured in a fresh process, so earlier tests cannot hide it."""
    grown_kib, width = map(int, in_a_fresh_process(_PROFILE_BOMB, timeout=120).split())
    assert width == 200
    assert grown_kib < 64 * 1024


def test_text_chunks_past_pillows_own_total_are_ignored_not_the_picture_refused() -> None:
    # Eighty chunks before the pixels, each within Pillow's limit for one (1 MiB inflated):
    # together past its limit for a file (64 MiB), so Pillow refused the picture as corrupt.
    one = png_chunk(b"zTXt", b"Comment\0\0" + zeros_deflated((1 << 20) - 1))
    source = png_with_chunk_before_pixels(Image.new("RGB", (400, 200), (0, 200, 0)), one * 80)
    [variant] = render_variants(io.BytesIO(source), [JPEG_200], max_pixels=LIMIT)
    assert close_to(decode(variant.data).getpixel((100, 50)), (0, 200, 0), tolerance=6)  # type: ignore[arg-type]


_TEXT_AFTER_PIXELS = """
import io, sys
from PIL import Image
from media_pipeline.resize import render_variants
from media_pipeline.specs import OutputFormat, VariantSpec
from tests.media_pipeline.images import png_chunk, zeros_deflated
buffer = io.BytesIO()
Image.new("RGB", (400, 200), (0, 200, 0)).save(buffer, "PNG")
picture = buffer.getvalue()
one = png_chunk(b"zTXt", b"k\\0\\0" + zeros_deflated((1 << 20) - 1))
source = picture[:-12] + one * 60_000 + picture[-12:]  # before IEND
spec = VariantSpec("w200-jpeg", 200, OutputFormat.JPEG, quality=90)
[variant] = render_variants(io.BytesIO(source), [spec], max_pixels=50_000_000)
print(variant.width)
"""


def test_sixty_thousand_text_chunks_after_the_pixels_are_skipped_not_inflated() -> None:
    """60 MB of chunks after the pixel data, each inflating to a mebibyte: every one was
    inflated (about 60 GiB of zeros, minutes of a media worker past its time limit), though
    no reader looks at metadata there. In a fresh process, bounded by its timeout."""
    assert in_a_fresh_process(_TEXT_AFTER_PIXELS, timeout=60).split() == ["200"]


class _FurthestRead(io.BytesIO):
    """A file that remembers the furthest byte any reader got to."""

    furthest = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.furthest = max(self.furthest, self.tell())
        return data

    def readinto(self, buffer: Any) -> int:
        count = super().readinto(buffer)
        self.furthest = max(self.furthest, self.tell())
        return count


@pytest.mark.parametrize("kind", [b"abCd", b"tEXt", b"IDAT"])
def test_chunks_after_the_pixel_data_are_not_even_walked(kind: bytes) -> None:
    """Empty chunks after the pixels (or empty IDATs after the picture's own) were stepped
    through one at a time in Python: 4 million in a 48 MB file took a worker 7 s, though no
    reader looks at them. Nothing past the picture's pixel data is read now."""
    buffer = io.BytesIO()
    Image.new("RGB", (400, 200), (0, 200, 0)).save(buffer, "PNG")
    picture = buffer.getvalue()
    body = b"k\0v" if kind == b"tEXt" else b""
    source = _FurthestRead(picture[:-12] + png_chunk(kind, body) * 100_000 + picture[-12:])
    [variant] = render_variants(source, [JPEG_200], max_pixels=LIMIT)
    assert close_to(decode(variant.data).getpixel((100, 50)), (0, 200, 0), tolerance=6)  # type: ignore[arg-type]
    # libvips reads ahead a little; the padding is over a mebibyte.
    assert source.furthest < len(picture) + 64 * 1024


_LONG_TEXT_BEFORE_PIXELS = """
import io, resource
from PIL import Image
from media_pipeline.resize import render_variants
from media_pipeline.specs import OutputFormat, VariantSpec
from tests.media_pipeline.images import png_chunk, png_with_chunk_before_pixels
chunk = png_chunk(b"{kind}", {head} + b"a" * (60 << 20))
source = png_with_chunk_before_pixels(Image.new("RGB", (400, 200), (0, 200, 0)), chunk)
spec = VariantSpec("w200-jpeg", 200, OutputFormat.JPEG, quality=90)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
[variant] = render_variants(io.BytesIO(source), [spec], max_pixels=50_000_000)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, variant.width)
"""


@pytest.mark.parametrize(
    ("kind", "head"),
    [
        ("tEXt", 'b"Comment\\0"'),
        ("iTXt", 'b"XML:com.adobe.xmp\\0\\0\\0\\0\\0"'),
        ("eXIf", 'b"MM\\0*\\0\\0\\0\\x08"'),
    ],
)
def test_uncompressed_metadata_of_sixty_mebibytes_before_the_pixels_is_skipped_not_read(
    kind: str, head: str
) -> None:
    """A 60 MiB text chunk, uncompressed, before the pixels: Pillow and libvips each kept
    copies of it (an XMP iTXt cost 300 MiB, twice the bound of a decode outside the slot;
    EXIF 190 MiB). Text or EXIF longer than Pillow's limit for one chunk is hidden like
    compressed text inflating past it. Growth in peak memory, in a fresh process."""
    code = _LONG_TEXT_BEFORE_PIXELS.format(kind=kind, head=head)
    grown_kib, width = map(int, in_a_fresh_process(code, timeout=120).split())
    assert width == 200
    assert grown_kib < 64 * 1024


@pytest.mark.parametrize("metadata", ["icc_profile", "exif", "xmp"])
def test_a_webp_carrying_megabytes_of_metadata_is_refused_before_any_reader_copies_it(
    metadata: str,
) -> None:
    # Pillow, libwebp's demuxer and libvips each kept a copy: 64 MiB of profile in a
    # 600 x 400 picture cost 328 MiB, more than a decode outside the slot may take.
    buffer = io.BytesIO()
    quadrants().save(buffer, "WEBP", **{metadata: b"M" * (17 * 2**20)})
    with pytest.raises(ImageTooLarge, match=r"carries 17\.0 MiB of metadata"):
        render_variants(io.BytesIO(buffer.getvalue()), COVER_SPECS, max_pixels=LIMIT)


def test_a_jpeg_colour_profile_of_megabytes_is_refused_before_pillow_gathers_its_pieces() -> None:
    """Pillow keeps every APP2 piece of a JPEG's profile and joins them (60 MiB of profile
    cost 69 MiB); a profile past the WebP's limit for metadata is refused the same way,
    from its segments' lengths, whether or not it is otherwise valid."""
    buffer = io.BytesIO()
    quadrants().save(buffer, "JPEG", icc_profile=padded_icc_bytes(17 * 2**20))
    with pytest.raises(ImageTooLarge, match=r"JPEG file carries 17\.0 MiB of colour profile"):
        render_variants(io.BytesIO(buffer.getvalue()), COVER_SPECS, max_pixels=LIMIT)


@pytest.mark.parametrize("size", [(1080, 24_000), (24_000, 1080), (1, 20_000)])
def test_a_very_long_source_gives_variants_no_format_refuses(size: tuple[int, int]) -> None:
    """A long phone screenshot: scaled to the spec's width, a WebP variant would be taller
    than WebP can store; it is made smaller instead of failing."""
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 60, 90)).save(buffer, "PNG")
    variants = render_variants(io.BytesIO(buffer.getvalue()), COVER_SPECS, max_pixels=LIMIT)
    assert len(variants) == len(COVER_SPECS)
    for variant in variants:
        assert max(variant.width, variant.height) <= 16_383
        assert decode(variant.data).size == (variant.width, variant.height)


@pytest.mark.parametrize("size", [(10_000_000, 5), (5, 10_000_000), (32_769, 2)])
def test_a_side_too_long_is_refused_from_the_header_whatever_the_pixel_count(
    size: tuple[int, int],
) -> None:
    # 10,000,000 x 5 is 50 megapixels, within the limit, and 145 KB of PNG; reading it would
    # take gigabytes (libvips reads a PNG in strips of full-width rows).
    with pytest.raises(ImageTooLarge, match=r"no side may be longer than 32,768 pixels"):
        render_variants(io.BytesIO(png_header_only(*size)), COVER_SPECS, max_pixels=LIMIT)


def test_a_jpeg_of_endless_scans_is_refused_before_decoding() -> None:
    """Each scan is decoded over the whole picture: thousands of tiny refinement scans keep
    a worker busy for minutes. A progressive photo's ten or so are fine."""
    progressive = jpeg_bytes(photo(800, 600), progressive=True)
    assert render_variants(io.BytesIO(progressive), [JPEG_200], max_pixels=LIMIT)
    last_scan = progressive[progressive.rfind(b"\xff\xda") : -2]
    endless = progressive[:-2] + last_scan * 150 + b"\xff\xd9"
    with pytest.raises(CorruptImage, match="more than 100 scans"):
        render_variants(io.BytesIO(endless), COVER_SPECS, max_pixels=LIMIT)


def test_a_jpeg_whose_scans_go_over_a_large_picture_many_times_is_refused_before_decoding() -> None:
    """Within 100 scans, each a full pass over 50 megapixels of CMYK: 88 passes held a worker
    for 14 s. A progressive photo's scans go over it about six times."""
    buffer = io.BytesIO()
    Image.new("CMYK", (7071, 7071), (10, 200, 30, 5)).save(
        buffer, "JPEG", progressive=True, subsampling=0
    )
    progressive = buffer.getvalue()
    first_scan = progressive.index(b"\xff\xda")
    full_pass = progressive[first_scan : progressive.index(b"\xff\xda", first_scan + 2)]
    many_passes = progressive[:-2] + full_pass * 30 + b"\xff\xd9"
    with pytest.raises(CorruptImage, match="scans go over its picture 36 times"):
        render_variants(io.BytesIO(many_passes), [JPEG_200], max_pixels=LIMIT)


def padded(fmt: str) -> bytes:
    """A small picture padded with 10,001 pieces its format allows, each a few bytes."""
    if fmt == "JPEG segments":
        return b"\xff\xd8" + b"\xff\xe5\x00\x02" * 10_001 + jpeg_bytes(photo(64, 48))[2:]
    if fmt == "JPEG fill bytes":
        return b"\xff\xd8" + b"\xff" * 65_537 + jpeg_bytes(photo(64, 48))[2:]
    picture = photo_file(fmt, quadrants(64, 48), orientation=1)
    if fmt == "PNG":
        return picture[:33] + png_chunk(b"teSt", b"") * 10_001 + picture[33:]
    if fmt == "GIF":
        at = picture.index(b",")  # the first image descriptor
        return picture[:at] + b"\x21\xfe\x01c\x00" * 5_001 + picture[at:]
    assert fmt == "WEBP"
    body = picture[12:] + b"XXXX\0\0\0\0" * 10_001
    return b"RIFF" + (len(body) + 4).to_bytes(4, "little") + b"WEBP" + body


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("JPEG segments", "more than 10,000 JPEG segments"),
        ("JPEG fill bytes", "more than 64 KiB of padding"),
        ("PNG", "more than 10,000 PNG chunks before its pixels"),
        ("GIF", "more than 10,000 GIF blocks before its first picture"),
        ("WEBP", "more than 10,000 WebP chunks"),
    ],
)
def test_a_file_padded_with_pieces_is_refused_before_any_parser_reads_it(
    fmt: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow reads these pieces one by one in Python and keeps them: 60 MiB of empty JPEG
    segments took it 31 s and 2 GiB to open, of GIF comment blocks 2 GiB."""
    from PIL import GifImagePlugin, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

    def parsed(self: Any) -> None:
        raise AssertionError(f"{type(self).__name__} parsed the padded file")

    plugins: list[type[Image.Image]] = [
        JpegImagePlugin.JpegImageFile,
        PngImagePlugin.PngImageFile,
        GifImagePlugin.GifImageFile,
        WebPImagePlugin.WebPImageFile,
    ]
    for plugin in plugins:
        monkeypatch.setattr(plugin, "_open", parsed)

    with pytest.raises(CorruptImage, match=message):
        render_variants(io.BytesIO(padded(fmt)), COVER_SPECS, max_pixels=LIMIT)


def test_a_motion_photo_s_video_after_the_picture_is_not_taken_for_scans() -> None:
    """Phones append the clip's MP4 after the JPEG's end; compressed video holds FF DA pairs
    by chance (about 15 a megabyte). Only the picture's own scans count."""
    import random

    base = jpeg_bytes(photo(1200, 900), progressive=True)
    motion = base + random.Random(7).randbytes(8 << 20)
    assert motion.count(b"\xff\xda") > 100
    assert len(render_variants(io.BytesIO(motion), COVER_SPECS, max_pixels=LIMIT)) == 4


def test_an_exif_thumbnail_s_scans_are_skipped_with_its_segment() -> None:
    thumbnail = jpeg_bytes(photo(160, 120), progressive=True)
    exif = Image.Exif()
    exif[0x010F] = "camera"
    source = jpeg_bytes(photo(800, 600), exif=exif.tobytes())
    # An APP1 segment holding a whole progressive JPEG of its own, before the picture.
    app1 = b"\xff\xe1" + (len(thumbnail) + 2).to_bytes(2, "big") + thumbnail
    with_thumbnail = source[:2] + app1 * 20 + source[2:]
    assert with_thumbnail.count(b"\xff\xda") > 100
    assert len(render_variants(io.BytesIO(with_thumbnail), [JPEG_200], max_pixels=LIMIT)) == 1


def test_small_sources_are_never_upscaled() -> None:
    source = jpeg_bytes(photo(120, 90))
    variants = render_variants(io.BytesIO(source), COVER_SPECS, max_pixels=LIMIT)
    assert {(v.width, v.height) for v in variants} == {(120, 90)}


def test_decompression_bomb_is_refused_by_header_pixel_count_before_decoding() -> None:
    # 8000x8000 is below Pillow's own bomb threshold, so our limit is what refuses it; the
    # file has no pixel data, so any attempt to decode would fail differently.
    with pytest.raises(ImageTooLarge, match=r"8000x8000 \(64\.0 megapixels\).*limit is 50\.0"):
        render_variants(io.BytesIO(png_header_only(8000, 8000)), COVER_SPECS, max_pixels=LIMIT)


def test_absurd_dimensions_are_refused_as_too_large() -> None:
    with pytest.raises(ImageTooLarge):
        render_variants(
            io.BytesIO(png_header_only(100_000, 100_000)), COVER_SPECS, max_pixels=LIMIT
        )


@pytest.mark.parametrize("fmt", ["WEBP", "HEIF", "AVIF"])
def test_a_small_picture_padded_to_a_large_file_is_refused_before_it_is_read(fmt: str) -> None:
    """WebP, HEIC and AVIF are read whole (twice over) before their header is judged: a
    64x64 picture followed by 300 MB of zeros cost the worker 600 MiB."""

    class Unreadable(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise AssertionError("the source was read")

    padded = Unreadable(photo_file(fmt, quadrants(64, 48), orientation=1) + b"\0" * 3 * 2**20)
    with pytest.raises(ImageTooLarge, match=r"The file is 3\.\d MiB; .* at most 2\.0 MiB"):
        render_variants(padded, COVER_SPECS, max_pixels=LIMIT, max_bytes=2 * 2**20)


def test_a_file_within_the_byte_limit_is_rendered_from_where_the_stream_stands() -> None:
    source = io.BytesIO(jpeg_bytes(photo(400, 300)))
    size = len(source.getvalue())
    assert render_variants(source, [JPEG_200], max_pixels=LIMIT, max_bytes=size)


def test_an_avif_whose_header_understates_its_frame_is_refused_before_decoding() -> None:
    """libavif reports the `ispe` box's size but dav1d decodes the AV1 frame: a 2 KB file
    claiming 1000x1000 decoded a 144-megapixel frame, past the limit and the decode slot."""
    buffer = io.BytesIO()
    Image.new("RGB", (3000, 2000), (200, 30, 90)).save(buffer, "AVIF", speed=10)
    forged = ispe_forged(buffer.getvalue(), 300, 200)
    slots: list[int] = []

    def slot(pixels: int) -> Any:
        slots.append(pixels)
        return nullcontext()

    with pytest.raises(
        CorruptImage, match=r"holds a 3000x2000 picture but its header says 300x200"
    ):
        render_variants(io.BytesIO(forged), COVER_SPECS, max_pixels=LIMIT, whole_decode_slot=slot)
    assert slots == []  # refused before any decode


def test_a_heic_grid_cropped_by_its_clap_box_is_rendered_at_the_cropped_size() -> None:
    # Cameras that tile a picture whose size is no multiple of the tile crop the grid with
    # a `clap` box; libheif reports the cropped size. Refused as forged before.
    stored = quadrants(384, 256)
    tiles = [[stored.crop((x, y, x + 192, y + 128)) for x in (0, 192)] for y in (0, 128)]
    slots: list[int] = []

    def slot(pixels: int) -> Any:
        slots.append(pixels)
        return nullcontext()

    [variant] = render_variants(
        io.BytesIO(heic_grid(tiles, crop=(380, 250))),
        [JPEG_200],
        max_pixels=LIMIT,
        whole_decode_slot=slot,
    )
    assert_upright_quadrants(decode(variant.data), (200, 132))
    assert slots == [384 * 256]  # charged for the canvas libheif decodes, not the crop


def test_a_heic_grid_past_its_header_within_the_limit_is_decoded_in_the_slot_then_refused() -> None:
    # libheif finds the mismatch only after decoding; the canvas is within the limit, so
    # that decode is allowed, charged to the slot for the canvas.
    forged = heic_grid([[Image.new("RGB", (64, 64), RED)] * 30] * 30, ispe=(100, 100))
    slots: list[int] = []

    def slot(pixels: int) -> Any:
        slots.append(pixels)
        return nullcontext()

    with pytest.raises(CorruptImage, match="truncated or corrupt"):
        render_variants(io.BytesIO(forged), COVER_SPECS, max_pixels=LIMIT, whole_decode_slot=slot)
    assert slots == [1920 * 1920]


@pytest.mark.parametrize("descriptor_in_idat", [False, True], ids=["in-mdat", "in-idat"])
def test_a_heic_grid_gives_its_tiles_in_place(descriptor_in_idat: bool) -> None:
    """A phone's HEIC is a grid of tiles: the picture is the tiles pasted together."""
    tiles = [
        [Image.new("RGB", (128, 96), colour) for colour in row]
        for row in ((RED, GREEN), (BLUE, WHITE))
    ]
    data = heic_grid(tiles, descriptor_in_idat=descriptor_in_idat)
    variant = render_variants(io.BytesIO(data), [JPEG_200], max_pixels=LIMIT)[0]
    image = decode(variant.data).convert("RGB")
    assert image.size == (200, 150)
    for point, colour in (
        ((10, 10), RED),
        ((190, 10), GREEN),
        ((10, 140), BLUE),
        ((190, 140), WHITE),
    ):
        assert close_to(image.getpixel(point), colour), point  # type: ignore[arg-type]


@pytest.mark.parametrize("quarter_turns", [1, 3])
def test_a_heic_grid_turned_a_quarter_as_phones_write_portrait_photos_is_shown_upright(
    quarter_turns: int,
) -> None:
    """A photo taken upright is stored as the sensor's landscape grid and an `irot` box;
    libheif (and so pillow-heif) reports its size turned, 384x256 stored read as 256x384. It
    was refused as "assembled on a 384x256 canvas but its header says 256x384", damaged or
    forged: every portrait photo from a phone."""
    upright = quadrants(256, 384)
    # Stored turned the other way, so that the turn shows it upright.
    stored = upright.rotate(-90 * quarter_turns, expand=True)
    tiles = [[stored.crop((x, y, x + 192, y + 128)) for x in (0, 192)] for y in (0, 128)]
    data = heic_grid(tiles, quarter_turns=quarter_turns)
    [variant] = render_variants(io.BytesIO(data), [JPEG_200], max_pixels=LIMIT)
    assert_upright_quadrants(decode(variant.data), (200, 300))


@pytest.mark.parametrize("descriptor_in_idat", [False, True], ids=["in-mdat", "in-idat"])
@pytest.mark.parametrize("grid_is", ["picture", "alpha"])
def test_a_heic_grid_over_the_limit_behind_a_small_header_is_refused_before_decoding(
    descriptor_in_idat: bool, grid_is: str
) -> None:
    """libheif decodes a grid onto the canvas the grid declares, whatever its `ispe` box
    (the size Pillow reports) says, and compares them only afterwards: a 43 KB file claiming
    100x100 over 31x31 tiles of 1024 px took 1.5 GiB, past the limit and the decode slot;
    the same grid as the alpha of a 64x64 picture, 1 GiB. Here a 1920x1920 canvas against a
    limit of 1 megapixel, to keep the file small."""
    if grid_is == "picture":
        tiles = [[Image.new("RGB", (64, 64), RED)] * 30] * 30
        forged = heic_grid(tiles, ispe=(100, 100), descriptor_in_idat=descriptor_in_idat)
        header = "100x100"
    else:
        tiles = [[Image.new("L", (64, 64), 255)] * 30] * 30
        picture = Image.new("RGB", (64, 64), RED)
        forged = heic_grid(
            tiles, ispe=(64, 64), descriptor_in_idat=descriptor_in_idat, alpha_of=picture
        )
        header = "64x64"
    slots: list[int] = []

    def slot(pixels: int) -> Any:
        slots.append(pixels)
        return nullcontext()

    with pytest.raises(
        CorruptImage, match=rf"assembled on a 1920x1920 canvas but its header says {header}"
    ):
        render_variants(
            io.BytesIO(forged), COVER_SPECS, max_pixels=1_000_000, whole_decode_slot=slot
        )
    assert slots == []  # refused before any decode


def test_a_heic_overlay_larger_than_its_header_says_is_refused_before_decoding() -> None:
    """An overlay (`iovl`) places pictures on a canvas of its own size, which libheif
    decodes whatever the `ispe` box says: a 479-byte file claiming 100x100 took 1.2 GiB."""
    forged = heic_overlay(Image.new("RGB", (64, 64), RED), canvas=(20_000, 20_000), ispe=(100, 100))
    with pytest.raises(
        CorruptImage, match=r"assembled on a 20000x20000 canvas but its header says 100x100"
    ):
        render_variants(io.BytesIO(forged), COVER_SPECS, max_pixels=LIMIT)


def test_a_heic_overlay_gives_its_picture_on_its_canvas() -> None:
    data = heic_overlay(Image.new("RGB", (64, 64), RED), canvas=(100, 100), ispe=(100, 100))
    variant = render_variants(io.BytesIO(data), [JPEG_200], max_pixels=LIMIT)[0]
    image = decode(variant.data).convert("RGB")
    assert image.size == (100, 100)
    assert close_to(image.getpixel((10, 10)), RED)  # type: ignore[arg-type]


def test_a_heic_s_alpha_grid_is_its_transparency() -> None:
    tiles = [[Image.new("L", (64, 64), 255), Image.new("L", (64, 64), 0)]]
    data = heic_grid(tiles, alpha_of=Image.new("RGB", (128, 64), RED))
    variant = render_variants(io.BytesIO(data), [WEBP_200], max_pixels=LIMIT)[0]
    image = decode(variant.data)
    assert image.mode == "RGBA" and image.size == (128, 64)
    assert close_to(image.getpixel((10, 10)), (*RED, 255))  # type: ignore[arg-type]
    assert image.getpixel((110, 10))[3] == 0  # type: ignore[index]


def test_limit_is_configurable() -> None:
    source = jpeg_bytes(photo(400, 300))
    with pytest.raises(ImageTooLarge, match=r"limit is 0\.1 megapixels"):
        render_variants(io.BytesIO(source), COVER_SPECS, max_pixels=100_000)


def test_truncated_jpeg_is_refused_as_corrupt() -> None:
    source = jpeg_bytes(photo(800, 600))
    with pytest.raises(CorruptImage, match="truncated or corrupt"):
        render_variants(io.BytesIO(source[: len(source) // 2]), COVER_SPECS, max_pixels=LIMIT)


@pytest.mark.parametrize(
    ("frame", "precision", "message"),
    [
        (0xC0, 12, "JPEG of 12-bit samples"),
        (0xC1, 16, "JPEG of 16-bit samples"),
        (0xC5, 8, "hierarchical JPEG"),
    ],
)
def test_a_jpeg_pillow_cannot_decode_is_named_not_called_corrupt(
    frame: int, precision: int, message: str
) -> None:
    # Such files (a scanner's 12-bit JPEG, say) were refused as "truncated or corrupt",
    # which sent the uploader looking for damage that is not there.
    source = bytearray(jpeg_bytes(photo(800, 600)))
    at = source.index(b"\xff\xc0")
    source[at + 1], source[at + 4] = frame, precision
    with pytest.raises(UnsupportedFormat, match=message) as refused:
        render_variants(io.BytesIO(bytes(source)), COVER_SPECS, max_pixels=LIMIT)
    assert "corrupt" not in str(refused.value)


def test_text_file_named_jpg_is_refused_as_not_an_image() -> None:
    with pytest.raises(NotAnImage, match="not an image"):
        render_variants(
            io.BytesIO(b"hello, I am a text file\n" * 40), COVER_SPECS, max_pixels=LIMIT
        )


ACCEPTED = ["JPEG", "MPO", "PNG", "WEBP", "GIF", "HEIF", "AVIF"]


def assert_upright_quadrants(image: Image.Image, size: tuple[int, int]) -> None:
    image = image.convert("RGB")
    assert image.size == size
    width, height = size
    assert close_to(image.getpixel((width // 4, height // 4)), RED)  # type: ignore[arg-type]
    assert close_to(image.getpixel((width * 3 // 4, height // 4)), GREEN)  # type: ignore[arg-type]
    assert close_to(image.getpixel((width // 4, height * 3 // 4)), BLUE)  # type: ignore[arg-type]
    assert close_to(image.getpixel((width * 3 // 4, height * 3 // 4)), WHITE)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ACCEPTED)
def test_every_accepted_format_gives_upright_metadata_free_variants_of_its_first_picture(
    fmt: str,
) -> None:
    source = photo_file(fmt, quadrants(1200, 800), orientation=6)

    variants = render_variants(io.BytesIO(source), COVER_SPECS, max_pixels=LIMIT)

    for variant in variants:
        image = decode(variant.data)
        assert image.format == variant.spec.format.value
        expected = (variant.spec.width, variant.spec.width * 2 // 3)
        assert (variant.width, variant.height) == expected
        assert_upright_quadrants(image, expected)
        assert_no_metadata(variant.data)


@pytest.mark.parametrize("brand", [b"mif1", b"miaf"])
def test_an_av1_picture_in_a_heif_without_the_avif_brand_is_named_not_called_corrupt(
    brand: bytes,
) -> None:
    """A valid AVIF whose file type names only the general HEIF brands: libavif refuses
    its `ftyp` and pillow-heif has no AV1 decoder. Nothing is damaged, so say what it is."""
    avif = photo_file("AVIF", quadrants(), orientation=1)
    ftyp_size = int.from_bytes(avif[:4], "big")
    source = avif[:ftyp_size].replace(b"avif", brand) + avif[ftyp_size:]
    with pytest.raises(UnsupportedFormat, match=r"AV1-coded \(AVIF\) in a HEIF file"):
        render_variants(io.BytesIO(source), COVER_SPECS, max_pixels=LIMIT)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "GIF", "HEIF", "AVIF"])
def test_a_truncated_file_of_every_format_is_refused_as_corrupt(fmt: str) -> None:
    source = photo_file(fmt, photo(800, 600), orientation=1)
    with pytest.raises(CorruptImage, match="truncated or corrupt"):
        render_variants(io.BytesIO(source[: len(source) * 2 // 3]), COVER_SPECS, max_pixels=LIMIT)


def test_avif_variants_are_made_when_a_spec_asks_for_them_and_keep_alpha() -> None:
    avif = VariantSpec("w200-avif", 200, OutputFormat.AVIF, quality=60)
    [variant] = render_variants(io.BytesIO(rgba_png()), [avif], max_pixels=LIMIT)
    image = decode(variant.data)
    assert image.format == "AVIF" and image.mode == "RGBA" and image.size == (200, 100)
    assert (variant.content_type, variant.extension) == ("image/avif", "avif")
    assert image.getpixel((20, 50))[3] == 0  # type: ignore[index]
    assert close_to(image.getpixel((180, 50)), (255, 0, 0, 255))  # type: ignore[arg-type]
    assert_no_metadata(variant.data)


def test_a_large_png_is_decoded_reduced_yet_matches_a_full_decode() -> None:
    upright = quadrants(4000, 3000)
    buffer = io.BytesIO()
    upright.save(buffer, "PNG")
    [variant] = render_variants(io.BytesIO(buffer.getvalue()), [JPEG_200], max_pixels=LIMIT)
    assert_upright_quadrants(decode(variant.data), (200, 150))


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "ICO", "EPS", "PSD", "TGA", "DDS", "PDF"])
def test_formats_we_do_not_serve_are_refused_without_any_other_plugin_parsing_them(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow's EPS plugin runs Ghostscript on loading; no plugin but those of the accepted
    formats may even read the header of an upload."""
    buffer = io.BytesIO()
    if fmt == "PSD":  # Pillow cannot write one: a header is enough for its plugin
        buffer.write(b"8BPS\0\1" + b"\0" * 6 + b"\0\3\0\0\0\x40\0\0\0\x30\0\x08\0\3")
    else:
        photo(64, 48).convert("RGBA" if fmt == "DDS" else "RGB").save(buffer, fmt)
    Image.init()  # every plugin registered, as in a worker that has opened anything before

    def parsed(self: Any) -> None:
        raise AssertionError(f"{type(self).__name__} parsed an upload")

    for plugin in ("EpsImagePlugin", "PsdImagePlugin", "TgaImagePlugin", "BmpImagePlugin"):
        module = __import__(f"PIL.{plugin}", fromlist=["_"])
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, Image.Image)
                and "_open" in vars(value)
            ):
                monkeypatch.setattr(value, "_open", parsed)

    with pytest.raises(NotAnImage, match=r"not an image \(or not one we can read\)"):
        render_variants(io.BytesIO(buffer.getvalue()), COVER_SPECS, max_pixels=LIMIT)


def test_same_input_gives_identical_bytes() -> None:
    source = jpeg_bytes(photo(640, 480, seed=3))
    first = render_variants(io.BytesIO(source), COVER_SPECS, max_pixels=LIMIT)
    second = render_variants(io.BytesIO(source), COVER_SPECS, max_pixels=LIMIT)
    assert [v.data for v in first] == [v.data for v in second]


def test_variant_names_are_content_addressed_by_source_and_spec() -> None:
    a, b = "a" * 64, "b" * 64
    assert variant_name(a, JPEG_200) == variant_name(a, JPEG_200)
    assert variant_name(a, JPEG_200) != variant_name(b, JPEG_200)
    assert variant_name(a, JPEG_200) != variant_name(a, WEBP_200)
    changed = VariantSpec(JPEG_200.name, 200, OutputFormat.JPEG, quality=50)
    assert variant_name(a, JPEG_200) != variant_name(a, changed)
    assert variant_name(a, WEBP_200).endswith(".webp")


def test_sha256_streams_the_source() -> None:
    data = b"x" * 3_000_000
    assert sha256_of(io.BytesIO(data), chunk_size=1 << 16) == sha256_of(io.BytesIO(data))


def test_cmyk_jpeg_comes_out_as_rgb_with_its_colours() -> None:
    source = io.BytesIO()
    Image.new("CMYK", (400, 300), (0, 255, 255, 0)).save(source, "JPEG", quality=95)
    for variant in render_variants(io.BytesIO(source.getvalue()), COVER_SPECS, max_pixels=LIMIT):
        image = decode(variant.data)
        assert image.mode in ("RGB", "RGBA")
        assert close_to(image.getpixel((10, 10)), RED[:3], tolerance=12)  # type: ignore[arg-type]


@pytest.mark.parametrize("progressive", [False, True])
def test_a_cmyk_jpeg_s_own_profile_gives_its_colours(progressive: bool) -> None:
    """A CMYK JPEG carries the profile of the press it was separated for (Photoshop always
    embeds one); a browser renders its colours through it. Converted naively, 255 - C, ...,
    then offered to littleCMS as a CMYK profile for RGB pixels (refused, so ignored), C0
    M100 Y100 K0 came out pure red where its profile says a dull orange."""
    profile = cmyk_icc_bytes()
    picture = Image.new("CMYK", (400, 300), (0, 255, 255, 0))
    expected = ImageCms.profileToProfile(
        picture.crop((0, 0, 1, 1)),
        ImageCms.ImageCmsProfile(io.BytesIO(profile)),
        ImageCms.createProfile("sRGB"),
        outputMode="RGB",
        renderingIntent=ImageCms.Intent.PERCEPTUAL,
    )
    assert expected is not None
    source = io.BytesIO()
    picture.save(source, "JPEG", quality=95, icc_profile=profile, progressive=progressive)
    for variant in render_variants(io.BytesIO(source.getvalue()), COVER_SPECS, max_pixels=LIMIT):
        image = decode(variant.data)
        assert image.mode == "RGB"
        assert close_to(image.getpixel((10, 10)), expected.getpixel((0, 0)), tolerance=12)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["JPEG", "MPO", "PNG", "WEBP", "GIF", "HEIF"])
def test_a_large_source_is_decoded_at_reduced_size_never_whole(fmt: str) -> None:
    # 2400x1600 for a largest target of 300x200: a decode of at most 1200x800 is enough
    # (twice the target, by whole factors or DCT scales); only AVIF has no such decode.
    source = photo_file(fmt, quadrants(2400, 1600), orientation=1)
    _register_heif_opener()  # as render_variants does before opening
    with Image.open(io.BytesIO(source)) as image:
        base = decode_reduced(image, io.BytesIO(source), (300, 200))
    assert 600 <= base.width <= 1200 and 400 <= base.height <= 800
    assert_upright_quadrants(base, base.size)


def test_a_webp_animation_whose_later_frames_are_rectangles_is_still_decoded_reduced() -> None:
    """libvips scales a WebP while decoding only if every frame fills the canvas; an
    encoder stores each later frame as the rectangle that changed. Such an animation came
    out at full canvas size (a 156-byte file on a 7000x7000 canvas cost 450 MiB)."""
    source = webp_animation(quadrants(2400, 1600))
    with Image.open(io.BytesIO(source)) as image:
        base = decode_reduced(image, io.BytesIO(source), (300, 200))
    assert 600 <= base.width <= 1200 and 400 <= base.height <= 800
    assert_upright_quadrants(base, base.size)


def test_a_small_frame_on_a_large_webp_canvas_gives_the_canvas_reduced() -> None:
    source = webp_one_small_frame_on_a_canvas(4000, 3000)
    with Image.open(io.BytesIO(source)) as image:
        base = decode_reduced(image, io.BytesIO(source), (800, 600))
    assert base.size == (2000, 1500)
    variants = render_variants(io.BytesIO(source), COVER_SPECS, max_pixels=LIMIT)
    assert {(v.width, v.height) for v in variants} == {(200, 150), (800, 600)}


def test_an_apng_whose_default_image_is_not_animated_gives_its_first_frame_as_browsers_do() -> None:
    """The `IDAT` picture of an APNG whose first `fcTL` follows it is for decoders without
    APNG support; browsers show the first frame (here Pillow's writer makes such a file)."""
    buffer = io.BytesIO()
    red, blue, green = (Image.new("RGB", (600, 400), colour) for colour in (RED, BLUE, GREEN))
    red.save(buffer, "PNG", save_all=True, append_images=[blue, green], default_image=True)

    for variant in render_variants(io.BytesIO(buffer.getvalue()), COVER_SPECS, max_pixels=LIMIT):
        assert close_to(decode(variant.data).convert("RGB").getpixel((20, 20)), BLUE)  # type: ignore[arg-type]


def test_an_apng_s_first_frame_smaller_than_its_canvas_is_drawn_on_transparency() -> None:
    """Browsers draw the first frame on a fully transparent canvas (APNG specification),
    not over the default image."""
    source = apng_with_a_default_image_apart(
        Image.new("RGB", (600, 400), RED), Image.new("RGB", (300, 200), BLUE), (300, 200)
    )

    variants = render_variants(io.BytesIO(source), [JPEG_200, WEBP_200], max_pixels=LIMIT)

    jpeg, webp = (decode(variant.data) for variant in variants)
    assert webp.mode == "RGBA" and webp.size == jpeg.size == (200, 133)
    assert webp.getpixel((50, 33))[3] == 0  # type: ignore[index]
    assert close_to(webp.getpixel((150, 100)), (*BLUE, 255))  # type: ignore[arg-type]
    assert close_to(jpeg.getpixel((50, 33)), WHITE)  # type: ignore[arg-type]
    assert close_to(jpeg.getpixel((150, 100)), BLUE)  # type: ignore[arg-type]


def test_a_gif_picture_smaller_than_its_screen_leaves_the_rest_transparent_as_browsers_do() -> None:
    """Pillow fills the screen around the first picture with palette entry 0 (here the
    picture's own red), opaque; browsers show nothing there: WebP keeps it transparent,
    JPEG has the white that alpha is flattened onto."""
    red = Image.new("RGB", (300, 200), RED)
    source = gif_picture_on_a_screen(red, (600, 400), (300, 200))

    variants = render_variants(io.BytesIO(source), [JPEG_200, WEBP_200], max_pixels=LIMIT)

    jpeg, webp = (decode(variant.data) for variant in variants)
    assert webp.mode == "RGBA" and webp.size == jpeg.size == (200, 133)
    assert webp.getpixel((50, 33))[3] == 0  # type: ignore[index]
    assert close_to(webp.getpixel((150, 100)), (*RED, 255))  # type: ignore[arg-type]
    assert close_to(jpeg.getpixel((50, 33)), WHITE)  # type: ignore[arg-type]
    assert close_to(jpeg.getpixel((150, 100)), RED)  # type: ignore[arg-type]


def test_a_one_pixel_gif_picture_on_a_large_screen_gives_a_transparent_cover() -> None:
    source = gif_picture_on_a_screen(Image.new("RGB", (1, 1), RED), (7000, 7000), (6990, 6990))

    for variant in render_variants(io.BytesIO(source), COVER_SPECS, max_pixels=LIMIT):
        # The one red pixel, averaged into its corner, is all that may show.
        image = decode(variant.data)
        if variant.spec.format is OutputFormat.WEBP:
            assert image.getchannel("A").getextrema()[1] <= 8  # type: ignore[operator]
        else:
            assert all(low >= 240 for low, _ in image.getextrema())  # type: ignore[misc]


@pytest.mark.parametrize("exif", [exif_bytes(6), None])
def test_reading_the_orientation_of_a_png_does_not_decode_its_pixels(exif: bytes | None) -> None:
    # Pillow's own PNG reader decodes everything to look for EXIF after the pixel data.
    buffer = io.BytesIO()
    quadrants().save(buffer, "PNG", **({"exif": exif} if exif else {}))
    with Image.open(buffer) as image:
        assert _orientation(image) == (6 if exif else 1)
        assert image.tile, "the pixels were decoded"


def test_strips_are_at_most_strip_rows_tall_and_add_up_to_a_whole_reduce() -> None:
    whole = photo(1000, 700, seed=4)
    heights = []

    def strip(box: tuple[int, int, int, int]) -> Image.Image:
        heights.append(box[3] - box[1])
        return whole.crop(box)

    reduced = _reduce_in_strips(whole.size, 3, strip)

    assert max(heights) <= STRIP_ROWS and sum(heights) == 700
    assert reduced.tobytes() == whole.reduce(3).tobytes()


def test_libvips_keeps_no_decoded_image_in_its_cache() -> None:
    buffer = io.BytesIO()
    photo(1600, 1200).save(buffer, "PNG")
    render_variants(io.BytesIO(buffer.getvalue()), [JPEG_200], max_pixels=LIMIT)
    assert pyvips.cache_get_size() == 0
