"""Two linear layers with an activation between them (the LLaVA-1.5 projector).

Parameter names (`linear_1`, `linear_2`) match Llava's `multi_modal_projector`, so the
export to `LlavaForConditionalGeneration` is a rename of the prefix only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers.activations import ACT2FN

from ocelli.errors import ConfigError
from ocelli.model.connectors.base import Connector
from ocelli.model.registry import register_connector


@register_connector("mlp")
class MLPConnector(Connector):
    default_options = {"hidden_act": "gelu", "bias": True}

    def __init__(self, vision_dim: int, text_dim: int, **options: Any) -> None:
        super().__init__(vision_dim, text_dim, **options)
        bias = self.options["bias"]
        self.linear_1 = nn.Linear(vision_dim, text_dim, bias=bias)
        self.act = ACT2FN[self.options["hidden_act"]]
        self.linear_2 = nn.Linear(text_dim, text_dim, bias=bias)

    @classmethod
    def check_dimensions(cls, vision_dim: int, text_dim: int, options: dict[str, Any]) -> None:
        if options["hidden_act"] not in ACT2FN:
            raise ConfigError(
                f"connector_config.hidden_act {options['hidden_act']!r} is not a known activation; "
                "use e.g. gelu, silu, relu, quick_gelu"
            )

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(self.standardize(image_features))))
