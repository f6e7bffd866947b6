"""Convolutional abstractor (Honeybee's C-Abstractor): residual convolution blocks keep
the features' locality, adaptive average pooling brings the grid to `num_tokens` (a
square number), more residual blocks, then a two-layer MLP to the LM. Honeybee's RegNet
blocks with squeeze-excitation are simplified to plain residual 3x3 blocks with
GroupNorm (no BatchNorm: its statistics depend on the batch)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ocelli.errors import ConfigError
from ocelli.model.connectors.base import Connector, require_positive_ints
from ocelli.model.connectors.spatial import check_token_budget, grid_side, projector, to_grid
from ocelli.model.registry import register_connector


class ResidualConvBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(1, channels),
            nn.SiLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(1, channels),
        )

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return nn.functional.silu(grid + self.body(grid))


@register_connector("c-abstractor")
class CAbstractorConnector(Connector):
    # hidden_size None = the encoder's width
    default_options = {"num_tokens": 16, "depth": 1, "hidden_size": None}

    def __init__(self, vision_dim: int, text_dim: int, **options: Any) -> None:
        super().__init__(vision_dim, text_dim, **options)
        hidden, depth = self.options["hidden_size"] or vision_dim, self.options["depth"]
        self.input_projection = nn.Conv2d(vision_dim, hidden, 1)
        self.before_pool = nn.Sequential(*(ResidualConvBlock(hidden) for _ in range(depth)))
        self.after_pool = nn.Sequential(*(ResidualConvBlock(hidden) for _ in range(depth)))
        self.projector = projector(hidden, text_dim)

    @classmethod
    def check_dimensions(cls, vision_dim: int, text_dim: int, options: dict[str, Any]) -> None:
        require_positive_ints(cls, options, "num_tokens", "depth")
        if options["hidden_size"] is not None:
            require_positive_ints(cls, options, "hidden_size")
        side = math.isqrt(options["num_tokens"])
        if side * side != options["num_tokens"]:
            raise ConfigError(
                f"connector c-abstractor: connector_config.num_tokens {options['num_tokens']} is "
                f"not a square number; use e.g. {side * side} or {(side + 1) ** 2}"
            )

    @classmethod
    def output_tokens(cls, num_input_tokens: int, options: dict[str, Any]) -> int:
        grid_side(cls, num_input_tokens)
        return check_token_budget(
            "c-abstractor", options["num_tokens"], num_input_tokens, "compresses"
        )

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        grid = self.input_projection(to_grid(self.standardize(image_features)))
        side = math.isqrt(self.options["num_tokens"])
        pooled = nn.functional.adaptive_avg_pool2d(self.before_pool(grid), side)
        return self.projector(self.after_pool(pooled).flatten(2).transpose(1, 2))
