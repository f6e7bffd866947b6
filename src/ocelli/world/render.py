"""Rendering a scene graph to pixels.

Objects are drawn at `supersample` times the image size and box-averaged down: each
output pixel holds the exact coverage of its area (antialiasing without the ringing of
a sharpening filter), so the inside of an object keeps its exact colour. Labels use
Pillow's embedded font, so no system fonts are needed and every machine draws the same
pixels.
"""

from __future__ import annotations

import functools
import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ocelli.world.geometry import draw_shape
from ocelli.world.scenes import Scene, SceneObject
from ocelli.world.vocab import COLORS

BACKGROUND_RGB = (240, 240, 240)
NOISE_STD = 14.0
TEXTURE_AMPLITUDE = 12.0
LABEL_FONT_REFERENCE = 100  # font size at which label extents are measured, then scaled


def render_scene(scene: Scene, supersample: int = 4) -> Image.Image:
    """The RGB image of `scene`, `scene.width` x `scene.height` pixels."""
    canvas = _background(scene, supersample)
    draw = ImageDraw.Draw(canvas)
    for obj in sorted(scene.objects, key=lambda o: o.id):
        draw_shape(
            draw,
            obj.shape,
            obj.center,
            obj.radius,
            obj.rotation,
            fill=COLORS[obj.color],
            scale=supersample,
        )
        if obj.label:
            _draw_label(draw, obj, supersample)
    return canvas.reduce(supersample) if supersample > 1 else canvas


def png_bytes(image: Image.Image) -> bytes:
    """PNG bytes with fixed settings: the same image always gives the same bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def _background(scene: Scene, supersample: int) -> Image.Image:
    width, height = scene.width * supersample, scene.height * supersample
    if scene.background == "plain":
        return Image.new("RGB", (width, height), BACKGROUND_RGB)
    rng = np.random.Generator(np.random.PCG64(scene.background_seed))
    if scene.background == "noise":
        # Grey-level noise at output resolution: it must not look like any object colour.
        noise = rng.normal(0.0, NOISE_STD, size=(scene.height, scene.width, 1))
        pixels = np.clip(np.asarray(BACKGROUND_RGB) + noise, 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels, "RGB")
        return image.resize((width, height), Image.Resampling.NEAREST)
    if scene.background == "texture":
        return Image.fromarray(_texture(rng, width, height, supersample), "RGB")
    raise ValueError(f"unknown background {scene.background!r}")


def _texture(rng: np.random.Generator, width: int, height: int, supersample: int) -> np.ndarray:
    """Soft grey stripes or checks with a random angle, period and phase."""
    angle = rng.uniform(0.0, math.pi)
    period = rng.uniform(5.0, 12.0) * supersample
    phase = rng.uniform(0.0, 2 * math.pi)
    checks = bool(rng.random() < 0.5)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    along = (xs * math.cos(angle) + ys * math.sin(angle)) * (2 * math.pi / period) + phase
    wave = np.sin(along)
    if checks:
        across = (-xs * math.sin(angle) + ys * math.cos(angle)) * (2 * math.pi / period)
        wave = wave * np.sin(across)
    gray = np.clip(BACKGROUND_RGB[0] - TEXTURE_AMPLITUDE + TEXTURE_AMPLITUDE * wave, 0, 255)
    return np.repeat(gray.astype(np.uint8)[:, :, None], 3, axis=2)


def _draw_label(draw: ImageDraw.ImageDraw, obj: SceneObject, supersample: int) -> None:
    """Write the label across the object's centre, as large as fits inside it."""
    reference = _font(LABEL_FONT_REFERENCE)
    left, top, right, bottom = reference.getbbox(obj.label)
    max_width, max_height = 1.1 * obj.radius * supersample, 0.8 * obj.radius * supersample
    scale = min(max_width / max(right - left, 1), max_height / max(bottom - top, 1))
    font = _font(max(4, int(LABEL_FONT_REFERENCE * scale)))
    red, green, blue = COLORS[obj.color]
    luminance = 0.299 * red + 0.587 * green + 0.114 * blue
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    center = ((obj.center[0] + 0.5) * supersample, (obj.center[1] + 0.5) * supersample)
    draw.text(center, obj.label, font=font, fill=ink, anchor="mm")


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)
