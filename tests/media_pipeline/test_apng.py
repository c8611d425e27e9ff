"""An APNG's first frame found apart from its default image, on real Pillow-made files."""

from __future__ import annotations

import io

from PIL import Image

from media_pipeline.apng import first_animation_frame
from tests.media_pipeline.images import BLUE, RED, apng_with_a_default_image_apart


def test_the_first_frame_is_a_png_of_its_own_placed_on_the_canvas() -> None:
    source = apng_with_a_default_image_apart(
        Image.new("RGB", (60, 40), RED), Image.new("RGB", (30, 20), BLUE), (10, 5)
    )
    first = first_animation_frame(io.BytesIO(source))
    assert first is not None and first.box == (10, 5, 40, 25)
    frame = Image.open(first.png)
    frame.load()  # Pillow checks every chunk's CRC
    assert frame.size == (30, 20) and frame.getpixel((0, 0)) == BLUE
    assert not getattr(frame, "is_animated", False)


def test_a_png_or_an_apng_whose_default_image_is_its_first_frame_has_none_apart() -> None:
    still, animated = io.BytesIO(), io.BytesIO()
    Image.new("RGB", (60, 40), RED).save(still, "PNG")
    red, blue = Image.new("RGB", (60, 40), RED), Image.new("RGB", (60, 40), BLUE)
    red.save(animated, "PNG", save_all=True, append_images=[blue])
    assert first_animation_frame(still) is None
    assert first_animation_frame(animated) is None


def test_a_first_frame_past_the_canvas_or_cut_short_gives_the_default_image() -> None:
    """As the APNG specification asks of an error found before the animation starts."""
    past = apng_with_a_default_image_apart(
        Image.new("RGB", (60, 40), RED), Image.new("RGB", (30, 20), BLUE), (40, 30)
    )
    whole = apng_with_a_default_image_apart(
        Image.new("RGB", (60, 40), RED), Image.new("RGB", (30, 20), BLUE), (0, 0)
    )
    assert first_animation_frame(io.BytesIO(past)) is None
    assert first_animation_frame(io.BytesIO(whole[: len(whole) - 20])) is None
