"""Salient-token selection: keep the `num_tokens` most distinctive places of the feature
grid, each with its neighbourhood and its position (token pruning by saliency).

A grid encoder spends most of its tokens on background. A small language model trained
from scratch has to find the few tokens that matter among them before it can answer,
and learns that slowly: on the world, 64 grid tokens of which 1-4 hold an object learned
far slower than one token per object. This connector keeps the peaks of a saliency map
and passes on only them:

1. saliency = the norm of the standardised feature (how far a place is from the typical
   token, which on a plain background is the background); no parameters;
2. peaks = places that are the maximum of their `window` x `window` neighbourhood, the
   `num_tokens` highest kept, in raster order (top-left first);
3. each kept place carries its whole neighbourhood (the features concatenated), through a
   two-layer MLP to the LM's width, plus an embedding of its (row, column) on the grid,
   since after selection the sequence order no longer says where a token was.

The selection itself is not learned (top-k has no gradient); what is learned is what the
kept tokens say.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ocelli.errors import ConfigError
from ocelli.model.connectors.base import Connector, require_positive_ints
from ocelli.model.connectors.spatial import check_token_budget, grid_side, projector, to_grid
from ocelli.model.registry import register_connector


@register_connector("salient")
class SalientConnector(Connector):
    default_options = {"num_tokens": 6, "window": 3}

    def __init__(self, vision_dim: int, text_dim: int, **options: Any) -> None:
        super().__init__(vision_dim, text_dim, **options)
        window = self.options["window"]
        self.projector = projector(vision_dim * window * window, text_dim)
        self.position = nn.Sequential(
            nn.Linear(2, text_dim), nn.GELU(), nn.Linear(text_dim, text_dim)
        )

    @classmethod
    def check_dimensions(cls, vision_dim: int, text_dim: int, options: dict[str, Any]) -> None:
        require_positive_ints(cls, options, "num_tokens", "window")
        if options["window"] % 2 == 0:
            raise ConfigError(
                f"connector salient: connector_config.window must be odd (the place sits in the "
                f"middle of its neighbourhood), got {options['window']}; use e.g. 1 or 3"
            )

    @classmethod
    def output_tokens(cls, num_input_tokens: int, options: dict[str, Any]) -> int:
        grid_side(cls, num_input_tokens)
        return check_token_budget("salient", options["num_tokens"], num_input_tokens, "selects")

    def select(self, features: torch.Tensor) -> torch.Tensor:
        """Indices (B, num_tokens) of the kept places, ascending (raster order)."""
        side = grid_side(type(self), features.shape[1])
        saliency = features.norm(dim=-1)
        window = self.options["window"]
        pooled = nn.functional.max_pool2d(
            saliency.reshape(-1, 1, side, side), window, stride=1, padding=window // 2
        ).reshape(saliency.shape)
        # peaks first; the rest by saliency, so that a grid with fewer peaks than
        # num_tokens still fills every slot
        rank = saliency + (saliency == pooled) * (saliency.max() + 1)
        return rank.topk(self.options["num_tokens"], dim=1).indices.sort(dim=1).values

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        features = self.standardize(image_features)
        batch, num_tokens, channels = features.shape
        side = grid_side(type(self), num_tokens)
        window = self.options["window"]
        kept = self.select(features)
        neighbourhoods = nn.functional.unfold(to_grid(features), window, padding=window // 2)
        neighbourhoods = neighbourhoods.transpose(1, 2)  # (B, N, C * window * window)
        gathered = neighbourhoods.gather(
            1, kept.unsqueeze(-1).expand(-1, -1, neighbourhoods.shape[-1])
        )
        rows = torch.div(kept, side, rounding_mode="floor")
        places = torch.stack([rows, kept - rows * side], dim=-1).to(features.dtype)
        places = (places + 0.5) / side
        return self.projector(gathered) + self.position(places)
