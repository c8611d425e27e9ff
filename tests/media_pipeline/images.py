"""Hand-made image files for tests: what Pillow will not write for us."""

from __future__ import annotations

import io
import itertools
import struct
import zlib

import pillow_heif
from PIL import Image, ImageCms


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming `width`x`height` whose pixel data is a few bytes: decoding it fails."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
    )


RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)
# The inverse of the transpose that makes an image with this EXIF orientation upright.
STORE_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
# Metadata every source carries where its format can, and no variant may keep.
MAKER = "CameraMaker-4711"
SECRET_COMMENT = b"secret-comment-4711"


def quadrants(width: int = 600, height: int = 400) -> Image.Image:
    """Upright reference: red top-left, green top-right, blue bottom-left, white bottom-right."""
    image = Image.new("RGB", (width, height))
    half_w, half_h = width // 2, height // 2
    image.paste(RED, (0, 0, half_w, half_h))
    image.paste(GREEN, (half_w, 0, width, half_h))
    image.paste(BLUE, (0, half_h, half_w, height))
    image.paste(WHITE, (half_w, half_h, width, height))
    return image


def exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = MAKER
    exif[0x0112] = orientation
    exif.get_ifd(0x8825)[2] = (52.0, 13.0, 0.0)  # GPS latitude
    return exif.tobytes()


def icc_bytes() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def cmyk_icc_bytes() -> bytes:
    """A CMYK printer profile (ICC v2, an A2B0 lut16 of 2 points a side to Lab) whose
    colours are not the naive 255 - C, ...: C0 M100 Y100 K0 is a dull orange (L 50, a 20,
    b 60), not pure red. littleCMS writes no CMYK profile, so it is made by hand."""

    def lab(lightness: float, a: float, b: float) -> bytes:
        return struct.pack(
            ">HHH", round(lightness / 100 * 0xFF00), (a + 128) * 256, (b + 128) * 256
        )

    clut = b""
    for c, m, y, k in itertools.product((0, 1), repeat=4):  # C varies slowest
        if k or (c and m and y):
            clut += lab(0, 0, 0)
        elif (c, m, y) == (0, 0, 0):
            clut += lab(100, 0, 0)
        elif (c, m, y) == (0, 1, 1):
            clut += lab(50, 20, 60)
        else:
            clut += lab(60, -10 * c + 40 * m, -40 * c + 50 * y)
    identity = struct.pack(">9i", 1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 16)
    ramp = struct.pack(">HH", 0, 0xFFFF)
    a2b0 = b"mft2" + bytes(4) + bytes([4, 3, 2, 0]) + identity + struct.pack(">HH", 2, 2)
    a2b0 += ramp * 4 + clut + ramp * 3
    d50 = struct.pack(">iii", 63190, 65536, 54061)
    tags = [
        (b"A2B0", a2b0),
        (b"wtpt", b"XYZ " + bytes(4) + d50),
        (b"desc", b"desc" + bytes(4) + struct.pack(">I", 2) + b"x\0" + bytes(78)),
    ]
    at = 128 + 4 + 12 * len(tags)
    table = body = b""
    for signature, data in tags:
        body += bytes(-(at + len(body)) % 4)
        table += signature + struct.pack(">II", at + len(body), len(data))
        body += data
    header = (
        struct.pack(">I", at + len(body))
        + b"lcms"
        + bytes([2, 0x10, 0, 0])
        + b"prtrCMYKLab "
        + bytes(12)
        + b"acsp"
        + bytes(28)
        + d50
        + bytes(48)
    )
    return header + struct.pack(">I", len(tags)) + table + body


def padded_icc_bytes(padding: int) -> bytes:
    """A valid sRGB profile followed by `padding` zero bytes, its header's size field
    patched to match: an over-long but well-formed profile."""
    profile = icc_bytes() + b"\0" * padding
    return struct.pack(">I", len(profile)) + profile[4:]


def png_with_chunk_before_pixels(picture: Image.Image, chunk: bytes) -> bytes:
    """`picture` as a PNG with `chunk` (a whole chunk, from png_chunk) right after IHDR."""
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    data = buffer.getvalue()
    after_ihdr = 8 + 12 + 13
    return data[:after_ihdr] + chunk + data[after_ihdr:]


def zeros_deflated(size: int) -> bytes:
    """zlib data that inflates to `size` zero bytes, made without holding them."""
    deflater = zlib.compressobj(9)
    block = b"\0" * (1 << 20)
    parts = [deflater.compress(block) for _ in range(size >> 20)]
    return b"".join([*parts, deflater.compress(b"\0" * (size % (1 << 20))), deflater.flush()])


def photo_file(fmt: str, upright: Image.Image, *, orientation: int = 6) -> bytes:
    """`upright` as a `fmt` file that a viewer shows upright, with metadata to strip.

    Stored rotated with an EXIF orientation where the format carries one; a HEIC's rotation
    is its `irot` box, which pillow-heif writes from the EXIF orientation. Animated formats
    (and MPO) get a second, different picture that must not be used.
    """
    stored = upright.transpose(STORE_AS[orientation]) if orientation in STORE_AS else upright
    other = Image.new("RGB", stored.size, (128, 0, 128))
    buffer = io.BytesIO()
    metadata = {"exif": exif_bytes(orientation), "icc_profile": icc_bytes()}
    if fmt == "JPEG":
        stored.save(buffer, "JPEG", quality=95, comment=SECRET_COMMENT, **metadata)
    elif fmt == "MPO":
        stored.save(buffer, "MPO", quality=95, save_all=True, append_images=[other], **metadata)
    elif fmt == "PNG":
        stored.save(buffer, "PNG", **metadata)
    elif fmt == "WEBP":
        stored.save(buffer, "WEBP", quality=95, save_all=True, append_images=[other], **metadata)
    elif fmt == "GIF":
        # GIF has no EXIF: its pictures are always stored upright.
        upright.save(
            buffer, "GIF", save_all=True, append_images=[other], comment=SECRET_COMMENT, loop=0
        )
    elif fmt == "HEIF":
        pillow_heif.from_pillow(stored).save(buffer, quality=90, **metadata)
    elif fmt == "AVIF":
        stored.save(buffer, "AVIF", quality=90, speed=10, **metadata)
    else:
        raise ValueError(fmt)
    return buffer.getvalue()


def gif_picture_on_a_screen(
    picture: Image.Image, screen: tuple[int, int], at: tuple[int, int]
) -> bytes:
    """`picture` as a GIF's only picture, placed at `at` on a logical screen of `screen`
    (Pillow always writes the first picture covering the screen)."""
    buffer = io.BytesIO()
    picture.quantize(16).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = struct.pack("<HH", *screen)
    flags = data[10]
    at_block = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # after the colour table
    while data[at_block] == 0x21:  # an extension: its label, then sub-blocks up to a 0
        at_block += 2
        while data[at_block]:
            at_block += data[at_block] + 1
        at_block += 1
    assert data[at_block] == 0x2C  # the image descriptor: its left and top come first
    data[at_block + 1 : at_block + 5] = struct.pack("<HH", *at)
    return bytes(data)


def apng_with_a_default_image_apart(
    default: Image.Image, frame: Image.Image, at: tuple[int, int]
) -> bytes:
    """An APNG whose `IDAT` holds `default`, not part of the animation (its one `fcTL`
    comes after), and whose only frame is `frame` (the same mode) placed at `at`."""

    def pixel_data(picture: Image.Image) -> tuple[bytes, bytes]:
        buffer = io.BytesIO()
        picture.save(buffer, "PNG")
        data, at_chunk, idat = buffer.getvalue(), 8, b""
        header = b""
        while at_chunk < len(data):
            (length,), kind = (
                struct.unpack(">I", data[at_chunk : at_chunk + 4]),
                data[at_chunk + 4 : at_chunk + 8],
            )
            body = data[at_chunk + 8 : at_chunk + 8 + length]
            header = body if kind == b"IHDR" else header
            idat += body if kind == b"IDAT" else b""
            at_chunk += 12 + length
        return header, idat

    header, default_data = pixel_data(default)
    _, frame_data = pixel_data(frame)
    control = struct.pack(">IIIIIHHBB", 0, *frame.size, *at, 1, 10, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"acTL", struct.pack(">II", 1, 0))
        + png_chunk(b"IDAT", default_data)
        + png_chunk(b"fcTL", control)
        + png_chunk(b"fdAT", struct.pack(">I", 1) + frame_data)
        + png_chunk(b"IEND", b"")
    )


def assert_no_metadata(data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    assert not image.getexif()
    assert not {"exif", "icc_profile", "xmp", "comment"} & set(image.info)
    assert MAKER.encode() not in data and SECRET_COMMENT not in data


def ispe_forged(data: bytes, width: int, height: int) -> bytes:
    """An AVIF or HEIC whose (first) `ispe` box claims `width`x`height`, its data unchanged."""
    at = data.index(b"ispe") + 8  # past the type and the FullBox version and flags
    return data[:at] + struct.pack(">II", width, height) + data[at + 8 :]


def webp_animation(first: Image.Image) -> bytes:
    """A two-frame WebP animation as encoders write one: the second frame changes a small
    rectangle, so it is stored as that rectangle, not the whole canvas."""
    second = first.copy()
    second.paste((128, 0, 128), (10, 10, 42, 42))
    buffer = io.BytesIO()
    first.save(buffer, "WEBP", save_all=True, append_images=[second], duration=[100, 100])
    return buffer.getvalue()


def webp_one_small_frame_on_a_canvas(width: int, height: int) -> bytes:
    """A one-frame WebP animation: a 16x16 frame on a `width`x`height` canvas (156 bytes)."""
    buffer = io.BytesIO()
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, BLUE)]
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    data = buffer.getvalue()
    chunks, at = [], 12
    while at < len(data):
        size = struct.unpack("<I", data[at + 4 : at + 8])[0]
        chunks.append(data[at : at + 8 + size + (size & 1)])
        at += 8 + size + (size & 1)
    first_frame = next(chunk for chunk in chunks if chunk[:4] == b"ANMF")
    kept = [chunk for chunk in chunks if chunk[:4] != b"ANMF"] + [first_frame]
    vp8x = kept[0]
    assert vp8x[:4] == b"VP8X"
    kept[0] = vp8x[:12] + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"".join(kept)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


def _full_box(kind: bytes, version: int, flags: int, body: bytes) -> bytes:
    return _box(kind, bytes([version]) + flags.to_bytes(3, "big") + body)


def _children(data: bytes, start: int, end: int) -> dict[bytes, bytes]:
    """The boxes in data[start:end] by type (the last of each), whole."""
    found = {}
    while start < end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        found[kind] = data[start : start + size]
        start += size
    return found


def _hevc(picture: Image.Image) -> tuple[bytes, bytes]:
    """A picture HEVC-coded by pillow-heif: its `hvcC` box and its coded data."""
    buffer = io.BytesIO()
    pillow_heif.from_pillow(picture).save(buffer, quality=90)
    data = buffer.getvalue()
    top = _children(data, 0, len(data))
    boxes = _children(top[b"meta"], 12, len(top[b"meta"]))
    ipco = _children(boxes[b"iprp"], 16, len(boxes[b"iprp"]))
    return ipco[b"hvcC"], top[b"mdat"][8:]


def heic_grid(
    tiles: list[list[Image.Image]],
    *,
    canvas: tuple[int, int] | None = None,
    ispe: tuple[int, int] | None = None,
    descriptor_in_idat: bool = False,
    alpha_of: Image.Image | None = None,
    quarter_turns: int = 0,
    crop: tuple[int, int] | None = None,
) -> bytes:
    """A HEIC whose primary item is a grid of `tiles` (rows of equal-sized pictures), as
    phones write one; pillow-heif writes no grids. The grid's `canvas` (default: the tiles'
    extent) and its `ispe` box (default: the canvas) may be told apart, as a forger would.
    With `alpha_of`, the primary item is that picture and the grid is its alpha. With
    `quarter_turns`, the grid is shown turned that many quarters anticlockwise (an `irot`
    box), as a phone writes a photo taken upright: its sensor's landscape grid, turned. With
    `crop`, a `clap` box crops the grid to that size, centred (its `ispe` stays the canvas)."""
    assert not (alpha_of and (quarter_turns or crop))
    tile_w, tile_h = tiles[0][0].size
    rows, cols = len(tiles), len(tiles[0])
    canvas = canvas or (tile_w * cols, tile_h * rows)
    ispe = ispe or canvas
    coded, hvcc = [], b""
    encoded: dict[int, bytes] = {}
    for picture in (tile for row in tiles for tile in row):
        if id(picture) not in encoded:  # the same picture in many places is encoded once
            # The same encoder settings give every tile the same hvcC.
            hvcc, encoded[id(picture)] = _hevc(picture)
        coded.append(encoded[id(picture)])
    # Item ids: the picture the grid is the alpha of (if any), the tiles, then the grid.
    first = 2 if alpha_of else 1
    tile_ids = list(range(first, first + len(coded)))
    grid_id = first + len(coded)
    descriptor = bytes([0, 1, rows - 1, cols - 1]) + struct.pack(">II", *canvas)
    # Properties 1-3: the tiles' hvcC and ispe, the grid's ispe; 4-6 the picture's hvcC
    # and ispe and the grid's auxC (alpha).
    properties = (
        hvcc
        + _full_box(b"ispe", 0, 0, struct.pack(">II", tile_w, tile_h))
        + _full_box(b"ispe", 0, 0, struct.pack(">II", *ispe))
    )
    associations = b"".join(struct.pack(">HBBB", i, 2, 0x81, 0x02) for i in tile_ids)
    items = b"".join(
        _full_box(b"infe", 2, 1, struct.pack(">HH", i, 0) + b"hvc1\0") for i in tile_ids
    ) + _full_box(b"infe", 2, 0, struct.pack(">HH", grid_id, 0) + b"grid\0")
    references = _box(
        b"dimg",
        struct.pack(">HH", grid_id, len(tile_ids)) + struct.pack(f">{len(tile_ids)}H", *tile_ids),
    )
    picture_data = b""
    if alpha_of:
        picture_hvcc, picture_data = _hevc(alpha_of)
        properties += (
            picture_hvcc
            + _full_box(b"ispe", 0, 0, struct.pack(">II", *alpha_of.size))
            + _full_box(b"auxC", 0, 0, b"urn:mpeg:hevc:2015:auxid:1\0")
        )
        associations = struct.pack(">HBBB", 1, 2, 0x84, 0x05) + associations
        associations += struct.pack(">HBBB", grid_id, 2, 0x03, 0x86)
        items = _full_box(b"infe", 2, 0, struct.pack(">HH", 1, 0) + b"hvc1\0") + items
        references += _box(b"auxl", struct.pack(">HHH", grid_id, 1, 1))
    elif quarter_turns:
        properties += _box(b"irot", bytes([quarter_turns % 4]))
        associations += struct.pack(">HBBB", grid_id, 2, 0x03, 0x84)  # irot is essential
    elif crop:
        # Width, height, horizontal and vertical offset of the centre, each a fraction.
        properties += _box(b"clap", struct.pack(">8I", crop[0], 1, crop[1], 1, 0, 1, 0, 1))
        associations += struct.pack(">HBBB", grid_id, 2, 0x03, 0x84)  # clap is essential
    else:
        associations += struct.pack(">HBB", grid_id, 1, 0x03)
    count = grid_id
    fixed = (
        _full_box(b"hdlr", 0, 0, bytes(4) + b"pict" + bytes(13))
        + _full_box(b"pitm", 0, 0, struct.pack(">H", 1 if alpha_of else grid_id))
        + _full_box(b"iinf", 0, 0, struct.pack(">H", count) + items)
        + _full_box(b"iref", 0, 0, references)
        + _box(
            b"iprp",
            _box(b"ipco", properties)
            + _full_box(b"ipma", 0, 0, struct.pack(">I", count) + associations),
        )
        + (_box(b"idat", descriptor) if descriptor_in_idat else b"")
    )
    ftyp = _box(b"ftyp", b"heic" + bytes(4) + b"mif1heic")

    def meta(mdat_start: int) -> bytes:
        locations, at = b"", mdat_start
        for i, data in zip(
            [1] * bool(alpha_of) + tile_ids, [picture_data] * bool(alpha_of) + coded, strict=True
        ):
            locations += struct.pack(">HHHHII", i, 0, 0, 1, at, len(data))
            at += len(data)
        grid_at = (1, 0) if descriptor_in_idat else (0, at)
        locations += struct.pack(">HHHHII", grid_id, grid_at[0], 0, 1, grid_at[1], len(descriptor))
        iloc = _full_box(b"iloc", 1, 0, b"\x44\x00" + struct.pack(">H", count) + locations)
        return _full_box(b"meta", 0, 0, fixed + iloc)

    mdat_start = len(ftyp) + len(meta(0)) + 8
    payload = picture_data + b"".join(coded) + (b"" if descriptor_in_idat else descriptor)
    return ftyp + meta(mdat_start) + _box(b"mdat", payload)


def heic_overlay(picture: Image.Image, *, canvas: tuple[int, int], ispe: tuple[int, int]) -> bytes:
    """A HEIC whose primary item is an overlay (`iovl`): `picture` at the top left of a
    `canvas` of its own size, its `ispe` box saying `ispe`."""
    hvcc, coded = _hevc(picture)
    descriptor = bytes([0, 1]) + bytes(8) + struct.pack(">IIii", *canvas, 0, 0)
    properties = (
        hvcc
        + _full_box(b"ispe", 0, 0, struct.pack(">II", *picture.size))
        + _full_box(b"ispe", 0, 0, struct.pack(">II", *ispe))
    )
    associations = struct.pack(">HBBB", 1, 2, 0x81, 0x02) + struct.pack(">HBB", 2, 1, 0x03)
    items = _full_box(b"infe", 2, 1, struct.pack(">HH", 1, 0) + b"hvc1\0") + _full_box(
        b"infe", 2, 0, struct.pack(">HH", 2, 0) + b"iovl\0"
    )
    fixed = (
        _full_box(b"hdlr", 0, 0, bytes(4) + b"pict" + bytes(13))
        + _full_box(b"pitm", 0, 0, struct.pack(">H", 2))
        + _full_box(b"iinf", 0, 0, struct.pack(">H", 2) + items)
        + _full_box(b"iref", 0, 0, _box(b"dimg", struct.pack(">HHH", 2, 1, 1)))
        + _box(
            b"iprp",
            _box(b"ipco", properties)
            + _full_box(b"ipma", 0, 0, struct.pack(">I", 2) + associations),
        )
    )
    ftyp = _box(b"ftyp", b"heic" + bytes(4) + b"mif1heic")

    def meta(mdat_start: int) -> bytes:
        locations = struct.pack(">HHHHII", 1, 0, 0, 1, mdat_start, len(coded))
        locations += struct.pack(">HHHHII", 2, 0, 0, 1, mdat_start + len(coded), len(descriptor))
        iloc = _full_box(b"iloc", 1, 0, b"\x44\x00" + struct.pack(">H", 2) + locations)
        return _full_box(b"meta", 0, 0, fixed + iloc)

    return ftyp + meta(len(ftyp) + len(meta(0)) + 8) + _box(b"mdat", coded + descriptor)


def multiscan_baseline_jpeg(width: int, height: int, components: int) -> bytes:
    """A baseline (SOF0) JPEG whose components each come in a scan of their own, as an
    encoder may write them: a flat picture, each block a DC difference of 0 and an
    end-of-block (two bits). Four components are CMYK (an Adobe segment says so)."""
    out = b"\xff\xd8"
    if components == 4:
        out += b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"  # transform 0: CMYK
    out += b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + b"\x01" * 64
    frame = struct.pack(">BHHB", 8, height, width, components) + b"".join(
        bytes([n + 1, 0x11, 0]) for n in range(components)
    )
    out += b"\xff\xc0" + struct.pack(">H", 2 + len(frame)) + frame
    # One code each: category 0 for DC, end-of-block for AC, both the bit 0.
    counts = bytes([1] + [0] * 15)
    out += b"\xff\xc4" + struct.pack(">H", 20) + b"\x00" + counts + b"\x00"
    out += b"\xff\xc4" + struct.pack(">H", 20) + b"\x10" + counts + b"\x00"
    bits = 2 * -(-width // 8) * -(-height // 8)
    data = b"\x00" * (bits // 8) + (bytes([(1 << (8 - bits % 8)) - 1]) if bits % 8 else b"")
    for n in range(components):
        scan = bytes([1, n + 1, 0x00, 0, 63, 0])
        out += b"\xff\xda" + struct.pack(">H", 2 + len(scan)) + scan + data
    return out + b"\xff\xd9"
