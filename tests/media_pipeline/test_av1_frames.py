"""Reading an AVIF's AV1 frame size from its sequence headers, on files Pillow writes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from media_pipeline.av1_frames import largest_av1_frame
from tests.media_pipeline.images import ispe_forged, photo_file, quadrants


def avif(image: Image.Image, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "AVIF", speed=10, **params)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "image",
    [Image.new("RGB", (333, 201)), Image.new("RGBA", (64, 48)), Image.new("L", (17, 9))],
    ids=["odd-sized", "with-alpha", "grey"],
)
def test_the_frame_size_is_read_from_the_av1_data(image: Image.Image) -> None:
    assert largest_av1_frame(io.BytesIO(avif(image))) == image.size


def test_the_frame_size_of_an_image_sequence_is_read_from_its_track() -> None:
    frames = [Image.new("RGB", (64, 48), (i * 40, 0, 0)) for i in range(4)]
    sequence = avif(frames[0], save_all=True, append_images=frames[1:])
    assert sequence[8:12] == b"avis"
    assert largest_av1_frame(io.BytesIO(sequence)) == (64, 48)


def test_the_frame_is_read_whatever_the_ispe_box_says_and_the_stream_is_left_in_place() -> None:
    source = io.BytesIO(ispe_forged(avif(Image.new("RGB", (640, 480))), 64, 48))
    source.seek(5)
    assert largest_av1_frame(source) == (640, 480)
    assert source.tell() == 5


def test_a_file_without_av1_data_has_no_frame_size() -> None:
    assert largest_av1_frame(io.BytesIO(photo_file("HEIF", quadrants(64, 48)))) is None
    assert largest_av1_frame(io.BytesIO(b"\0\0\0\x10ftypavif\0\0\0\0")) is None
