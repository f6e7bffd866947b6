"""The image side of AnyRes (see ocelli.model.anyres for the recipe).

`AnyResImageProcessor` resizes each image, keeping its aspect ratio, into the grid
resolution that fits it best, centres it there (the bands are left at the
normalised mean, 0), and writes that grid onto a canvas the size of the largest grid,
whose unused tiles are NaN: (B, 3, max_rows * S, max_cols * S), S the encoder's input
size. It also says how many image tokens an image of a given size becomes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ocelli.data.images import RESAMPLE, ImageInput, ImageProcessor, load_image
from ocelli.errors import ConfigError, ImageError
from ocelli.model.anyres import AnyResConfig, Grid

_EXIF_ORIENTATION = 0x0112
_SIDEWAYS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


@dataclass
class AnyResImageProcessor(ImageProcessor):
    """An ImageProcessor whose `size` is the tile size, plus the model's `anyres` options."""

    anyres: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        height, width = self.size
        if height != width:
            raise ConfigError(f"AnyRes tiles are square; got tile size {height}x{width}")
        self.layout = AnyResConfig.from_dict(self.anyres)
        self.layout.check_tile_size(height)
        self.anyres = self.layout.to_dict()

    @property
    def tile_size(self) -> int:
        return self.size[0]

    def grid(self, image_size: tuple[int, int]) -> Grid:
        """(rows, cols) of tiles for an image of (width, height) pixels."""
        width, height = image_size
        return self.layout.select_grid(width, height, self.tile_size)

    def num_tokens(self, image_size: tuple[int, int], tokens_per_tile: int) -> int:
        return self.layout.num_tokens(self.grid(image_size), tokens_per_tile)

    def __call__(self, images: ImageInput | list[ImageInput]) -> torch.FloatTensor:
        """One image or a list -> (B, 3, max_rows * S, max_cols * S), NaN outside each
        image's grid."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        size = self.tile_size
        max_rows, max_cols = self.layout.max_grid(size)
        canvas = torch.full((len(images), 3, max_rows * size, max_cols * size), float("nan"))
        for index, image in enumerate(images):
            rgb = load_image(image, self.max_pixels)
            rows, cols = self.grid(rgb.size)
            canvas[index, :, : rows * size, : cols * size] = self._fit(
                rgb, rows * size, cols * size
            )
        return canvas

    def _fit(self, rgb: Image.Image, height: int, width: int) -> torch.Tensor:
        scale = min(width / rgb.width, height / rgb.height)
        new_width = min(width, max(1, round(rgb.width * scale)))
        new_height = min(height, max(1, round(rgb.height * scale)))
        if rgb.size != (new_width, new_height):
            rgb = rgb.resize((new_width, new_height), RESAMPLE[self.resample])
        pixels = np.asarray(rgb, dtype=np.float32)
        if self.rescale:
            pixels = pixels / 255.0
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        fitted = torch.zeros((3, height, width))
        top, left = (height - new_height) // 2, (width - new_width) // 2
        fitted[:, top : top + new_height, left : left + new_width] = torch.from_numpy(
            ((pixels - mean) / std).transpose(2, 0, 1).copy()
        )
        return fitted


def image_size(source: ImageInput) -> tuple[int, int]:
    """(width, height) of an image as `load_image` would give it (EXIF rotation applied),
    reading only the file's header when it is a path."""
    if isinstance(source, Image.Image):
        return source.size
    if not isinstance(source, (str, os.PathLike)):
        return load_image(source).size
    path = Path(source)
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError):
        return load_image(path).size  # load_image names what is wrong with the file
    if orientation in _SIDEWAYS:
        width, height = height, width
    if width < 1 or height < 1:
        raise ImageError(f"image file {path} has no pixels ({width}x{height})")
    return width, height
