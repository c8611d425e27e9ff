"""Synthetic photographs made with Pillow alone, for the demo course, tests and benchmarks.

Smooth structure plus sensor-like grain, so a JPEG of it compresses roughly like a real
photo (a flat or pure-noise image would make decoding look unrealistically cheap or dear).
"""

from __future__ import annotations

import io

from PIL import Image, ImageChops, ImageDraw


def photo(width: int, height: int, *, seed: int = 0, grain: float = 12.0) -> Image.Image:
    """An RGB landscape-ish picture: sky gradient, a fractal "hill", a sun, and grain."""
    small = (max(8, width // 8), max(8, height // 8))
    sky = Image.linear_gradient("L").resize(small)
    hill = Image.effect_mandelbrot(small, (-2.2 + seed * 0.01, -1.2, 1.0, 1.2), 64)
    red = ImageChops.add(sky, hill, scale=2.0)
    green = ImageChops.screen(sky.transpose(Image.Transpose.FLIP_TOP_BOTTOM), hill)
    blue = Image.radial_gradient("L").resize(small)
    picture = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(picture)
    sun = (small[0] * (0.6 + 0.05 * (seed % 5)), small[1] * 0.25)
    radius = min(small) * 0.12
    draw.ellipse(
        (sun[0] - radius, sun[1] - radius, sun[0] + radius, sun[1] + radius), fill=(250, 220, 120)
    )
    picture = picture.resize((width, height), Image.Resampling.BICUBIC)
    noise = Image.effect_noise((width, height), grain).convert("RGB")
    return ImageChops.add(picture, noise, scale=1.0, offset=-128)


def jpeg_bytes(image: Image.Image, *, quality: int = 90, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, **params)
    return buffer.getvalue()
