"""AnyRes: high-resolution images as a grid of encoder-sized tiles plus a thumbnail
(the LLaVA-NeXT recipe, written for ocelli).

An image is resized, keeping its aspect ratio, into the configured resolution
(`grid_pinpoints`, (height, width) in pixels, multiples of the encoder's input size)
that keeps the most of its pixels while wasting the least canvas, then cut into tiles
the encoder reads one at a time. The whole image is also read at the encoder's size
(the thumbnail, first). Tile tokens are laid out as one feature map of the whole grid,
and a learned newline embedding ends every row of it, so the LM sees where rows break.

How the pixels travel: the image processor writes each image's grid onto a canvas the
size of the largest grid (every image of a batch has the same shape, so everything that
concatenates images along dim 0 keeps working) and fills the unused tiles with NaN. The
model reads each image's grid back from which tiles are finite. Vision features keep
that shape, one slot per possible tile with NaN in the unused ones, so features
computed once per image (frozen-tower training) carry their grid with them.

Token count per image with a grid of rows x cols tiles, T tokens per tile after the
connector (a t x t map when T is a square, else one row of T) and a newline on:
    T (thumbnail) + rows*t * (cols*t + 1).
Unlike LLaVA-NeXT, the padding bands of the letterboxed image are not cut from the
feature map, so the count depends only on the grid, never on the exact image size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ocelli.errors import ConfigError, PromptError

Grid = tuple[int, int]  # (rows, cols) of tiles


@dataclass(frozen=True)
class AnyResConfig:
    """`grid_pinpoints`: the resolutions an image may be tiled at, (height, width) in
    pixels, each a multiple of the tile size. `thumbnail`: also read the whole image at
    the tile size. `newline`: a learned embedding after each row of tile features."""

    grid_pinpoints: tuple[tuple[int, int], ...]
    thumbnail: bool = True
    newline: bool = True

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> AnyResConfig:
        options = dict(options)
        unknown = sorted(set(options) - {"grid_pinpoints", "thumbnail", "newline"})
        if unknown:
            raise ConfigError(
                f"anyres has unknown key(s) {', '.join(unknown)}; accepted keys: "
                "grid_pinpoints, thumbnail, newline"
            )
        if "grid_pinpoints" not in options:
            raise ConfigError(
                "anyres needs grid_pinpoints: the (height, width) resolutions an image may be "
                "tiled at, e.g. [[64, 32], [32, 64], [64, 64]] for a 32-pixel encoder"
            )
        pinpoints = options["grid_pinpoints"]
        if not isinstance(pinpoints, (list, tuple)) or not pinpoints:
            raise ConfigError(f"anyres.grid_pinpoints must be a non-empty list, got {pinpoints!r}")
        pairs = []
        for point in pinpoints:
            if (
                not isinstance(point, (list, tuple))
                or len(point) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in point)
            ):
                raise ConfigError(
                    f"anyres.grid_pinpoints entry {point!r} is not a (height, width) pair of "
                    "positive ints"
                )
            pairs.append((int(point[0]), int(point[1])))
        for key in ("thumbnail", "newline"):
            if not isinstance(options.get(key, True), bool):
                raise ConfigError(f"anyres.{key} must be true or false, got {options[key]!r}")
        return cls(
            grid_pinpoints=tuple(dict.fromkeys(pairs)),
            thumbnail=options.get("thumbnail", True),
            newline=options.get("newline", True),
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "grid_pinpoints": [list(p) for p in self.grid_pinpoints]}

    # -- geometry ----------------------------------------------------------------------
    def check_tile_size(self, tile_size: int, encoder: str = "the vision encoder") -> None:
        bad = [p for p in self.grid_pinpoints if p[0] % tile_size or p[1] % tile_size]
        if bad:
            raise ConfigError(
                f"anyres.grid_pinpoints {[list(p) for p in bad]} are not multiples of {encoder}'s "
                f"input size {tile_size}, so they cannot be cut into tiles it reads; use "
                f"multiples of {tile_size} (e.g. [{tile_size}, {2 * tile_size}])"
            )

    def grids(self, tile_size: int) -> list[Grid]:
        return [(h // tile_size, w // tile_size) for h, w in self.grid_pinpoints]

    def max_grid(self, tile_size: int) -> Grid:
        grids = self.grids(tile_size)
        return max(rows for rows, _ in grids), max(cols for _, cols in grids)

    def select_grid(self, width: int, height: int, tile_size: int) -> Grid:
        """The grid whose resolution keeps most of the image's pixels once it is scaled
        to fit (never counting upscaling as gain), ties broken by the least wasted area."""
        best, best_key = None, None
        for rows, cols in self.grids(tile_size):
            canvas_h, canvas_w = rows * tile_size, cols * tile_size
            scale = min(canvas_w / width, canvas_h / height)
            kept = min(int(width * scale) * int(height * scale), width * height)
            key = (kept, -(canvas_w * canvas_h - kept))
            if best_key is None or key > best_key:
                best, best_key = (rows, cols), key
        return best

    def num_tokens(self, grid: Grid, tokens_per_tile: int) -> int:
        """Image tokens of an image tiled as `grid` (see the module docstring)."""
        rows, cols = grid
        tile_h, tile_w = tile_token_shape(tokens_per_tile)
        thumbnail = tokens_per_tile if self.thumbnail else 0
        return thumbnail + rows * tile_h * (cols * tile_w + int(self.newline))


def tile_token_shape(tokens_per_tile: int) -> tuple[int, int]:
    """A tile's tokens as a map: t x t when the count is a square, else one row."""
    side = math.isqrt(tokens_per_tile)
    return (side, side) if side * side == tokens_per_tile else (1, tokens_per_tile)


def check_anyres(config: Any, connector_class: type) -> None:
    """ConfigError for a model config AnyRes cannot work with."""
    anyres = AnyResConfig.from_dict(config.anyres)
    if not connector_class.requires_vision_encoder:
        raise ConfigError(
            f"anyres needs a vision encoder to read its tiles, but connector {config.connector!r} "
            "reads raw pixels; drop anyres or pick a connector that reads encoder features (mlp)"
        )
    if connector_class.acts_inside_language_model:
        raise ConfigError(
            f"anyres makes the image-token count vary from image to image, which connector "
            f"{config.connector!r} (acting inside the language model on a fixed number of image "
            "features) cannot take; use a token-level connector (linear, mlp, pixel_shuffle, ...)"
        )
    image_size = config.vision_config.image_size
    if not isinstance(image_size, int):
        raise ConfigError(
            f"anyres needs a square encoder input size, got image_size {image_size!r}"
        )
    anyres.check_tile_size(image_size, f"the {config.vision_config.model_type} encoder")


# -- pixels <-> tiles --------------------------------------------------------------------
def tile_slots(canvas: torch.Tensor, tile_size: int) -> torch.Tensor:
    """(B, 3, R*S, C*S) canvases -> (B, R*C, 3, S, S) tiles in row-major order."""
    batch, channels, height, width = canvas.shape
    rows, cols = height // tile_size, width // tile_size
    tiles = canvas.reshape(batch, channels, rows, tile_size, cols, tile_size)
    return tiles.permute(0, 2, 4, 1, 3, 5).reshape(
        batch, rows * cols, channels, tile_size, tile_size
    )


def grid_of(present: torch.Tensor, max_grid: Grid) -> list[Grid]:
    """(B, R*C) bool of tiles in use -> each image's (rows, cols)."""
    grid = present.reshape(-1, *max_grid)
    return [(int(g[:, 0].sum()), int(g[0].sum())) for g in grid]


class AnyResLayout(nn.Module):
    """The model's side of AnyRes: cuts canvases into crops for the encoder, and lays
    the connector's per-crop tokens out into one sequence per image with newlines."""

    def __init__(self, options: dict[str, Any], tile_size: int, text_dim: int) -> None:
        super().__init__()
        self.anyres = AnyResConfig.from_dict(options)
        self.tile_size = tile_size
        self.max_grid = self.anyres.max_grid(tile_size)
        self.num_slots = int(self.anyres.thumbnail) + self.max_grid[0] * self.max_grid[1]
        if self.anyres.newline:
            # LLaVA-NeXT's initialisation: a random vector at the scale of an embedding
            self.image_newline = nn.Parameter(torch.randn(text_dim) / math.sqrt(text_dim))

    def crops(self, canvas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) canvases -> (B, slots, 3, S, S) crops (thumbnail first, then the
        tiles) and the (B, slots) mask of crops in use."""
        rows, cols = self.max_grid
        size = self.tile_size
        expected = (3, rows * size, cols * size)
        if canvas.ndim != 4 or tuple(canvas.shape[1:]) != expected:
            raise PromptError(
                f"anyres takes pixel_values of shape (num_images, {', '.join(map(str, expected))}), "
                f"got {tuple(canvas.shape)}; preprocess images with the model's AnyRes image "
                "processor (OcelliProcessor.for_model builds it)"
            )
        tiles = tile_slots(canvas, size)
        present = torch.isfinite(tiles).flatten(2).all(-1)
        if not self.anyres.thumbnail:
            return tiles, present
        thumbnails = []
        for image, (grid_rows, grid_cols) in zip(
            canvas, grid_of(present, self.max_grid), strict=True
        ):
            used = image[:, : grid_rows * size, : grid_cols * size].unsqueeze(0)
            thumbnails.append(
                nn.functional.interpolate(
                    used.float(), size=(size, size), mode="bilinear", antialias=True
                ).to(canvas.dtype)
            )
        crops = torch.cat([torch.cat(thumbnails).unsqueeze(1), tiles], dim=1)
        present = torch.cat([present.new_ones(len(canvas), 1), present], dim=1)
        return crops, present

    def present_slots(self, features: torch.Tensor) -> torch.Tensor:
        """(B, slots, N, D) per-crop features (NaN in unused slots) -> (B, slots) mask."""
        return torch.isfinite(features).flatten(2).all(-1)

    def grids(self, present: torch.Tensor) -> list[Grid]:
        tiles = present[:, 1:] if self.anyres.thumbnail else present
        return grid_of(tiles, self.max_grid)

    def num_tokens(self, present: torch.Tensor, tokens_per_tile: int) -> list[int]:
        """Image tokens of each image, from its (slots,) mask of crops in use."""
        return [self.anyres.num_tokens(grid, tokens_per_tile) for grid in self.grids(present)]

    def arrange(self, crop_tokens: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """(crops in use, T, D) connector outputs, in slot order, -> (total tokens, D):
        each image's thumbnail tokens, then its tile map row by row, each row closed by
        the newline embedding."""
        tokens_per_tile, dim = crop_tokens.shape[1:]
        tile_h, tile_w = tile_token_shape(tokens_per_tile)
        pieces, begin = [], 0
        for grid_rows, grid_cols in self.grids(present):
            if self.anyres.thumbnail:
                pieces.append(crop_tokens[begin])
                begin += 1
            count = grid_rows * grid_cols
            tiles = crop_tokens[begin : begin + count].reshape(
                grid_rows, grid_cols, tile_h, tile_w, dim
            )
            begin += count
            feature_map = tiles.permute(0, 2, 1, 3, 4).reshape(
                grid_rows * tile_h, grid_cols * tile_w, dim
            )
            if self.anyres.newline:
                newline = self.image_newline.to(feature_map.dtype).expand(len(feature_map), 1, dim)
                feature_map = torch.cat([feature_map, newline], dim=1)
            pieces.append(feature_map.reshape(-1, dim))
        return torch.cat(pieces)
