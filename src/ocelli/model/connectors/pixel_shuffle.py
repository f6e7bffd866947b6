"""Token compression by space-to-depth (nanoVLM, InternVL): every `factor` x `factor`
block of neighbouring features becomes one token with factor² times the channels, then
a two-layer MLP maps it to the LM. N tokens in, N / factor² out."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ocelli.errors import ConfigError
from ocelli.model.connectors.base import Connector, require_positive_ints
from ocelli.model.connectors.spatial import grid_side, projector, to_grid
from ocelli.model.registry import register_connector


@register_connector("pixel-shuffle")
class PixelShuffleConnector(Connector):
    default_options = {"factor": 2}

    def __init__(self, vision_dim: int, text_dim: int, **options: Any) -> None:
        super().__init__(vision_dim, text_dim, **options)
        self.projector = projector(vision_dim * self.options["factor"] ** 2, text_dim)

    @classmethod
    def check_dimensions(cls, vision_dim: int, text_dim: int, options: dict[str, Any]) -> None:
        require_positive_ints(cls, options, "factor")

    @classmethod
    def output_tokens(cls, num_input_tokens: int, options: dict[str, Any]) -> int:
        side, factor = grid_side(cls, num_input_tokens), options["factor"]
        if side % factor:
            raise ConfigError(
                f"connector pixel-shuffle: the {side}x{side} grid of image features is not "
                f"divisible by connector_config.factor {factor}; use a factor dividing {side} "
                "or change the encoder's image_size/patch_size"
            )
        return num_input_tokens // factor**2

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        grid = to_grid(self.standardize(image_features))
        # (B, C, H, W) -> (B, C*f*f, H/f, W/f): each output token holds one f x f block
        shuffled = nn.functional.pixel_unshuffle(grid, self.options["factor"])
        return self.projector(shuffled.flatten(2).transpose(1, 2))
