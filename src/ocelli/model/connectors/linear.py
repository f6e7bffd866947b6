"""A single linear projection (the original LLaVA projector)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ocelli.model.connectors.base import Connector
from ocelli.model.registry import register_connector


@register_connector("linear")
class LinearConnector(Connector):
    default_options = {"bias": True}

    def __init__(self, vision_dim: int, text_dim: int, **options: Any) -> None:
        super().__init__(vision_dim, text_dim, **options)
        self.linear = nn.Linear(vision_dim, text_dim, bias=self.options["bias"])

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.standardize(image_features))
