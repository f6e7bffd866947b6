"""What the learned-query connectors (`qformer`, `perceiver`) share: a fixed number of
queries reads the standardised image features, so the LM gets `num_queries` tokens per
image whatever the encoder's grid. The two differ only in how a layer attends."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ocelli.model.connectors.attention import QueryResampler
from ocelli.model.connectors.base import (
    Connector,
    require_divisible_heads,
    require_positive_ints,
)


class ResamplerConnector(Connector):
    """Base of `qformer` and `perceiver`; subclasses name the option holding the number
    of queries and choose the layer kind (see `ResamplerLayer`)."""

    count_option: ClassVar[str] = "num_queries"
    self_attention: ClassVar[bool] = True
    attend_to_queries: ClassVar[bool] = False

    def __init__(self, vision_dim: int, text_dim: int, **options: Any) -> None:
        super().__init__(vision_dim, text_dim, **options)
        self.resampler = QueryResampler(
            vision_dim,
            self.options["hidden_size"] or text_dim,
            text_dim,
            self.options[self.count_option],
            self.options["num_layers"],
            self.options["num_heads"],
            self_attention=self.self_attention,
            attend_to_queries=self.attend_to_queries,
        )

    @classmethod
    def check_dimensions(cls, vision_dim: int, text_dim: int, options: dict[str, Any]) -> None:
        require_positive_ints(cls, options, cls.count_option, "num_layers", "num_heads")
        if options["hidden_size"] is not None:
            require_positive_ints(cls, options, "hidden_size")
        require_divisible_heads(cls, options["hidden_size"] or text_dim, options["num_heads"])

    @classmethod
    def output_tokens(cls, num_input_tokens: int, options: dict[str, Any]) -> int:
        return options[cls.count_option]

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.resampler(self.standardize(image_features))
