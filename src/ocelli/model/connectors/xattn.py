"""Flamingo: gated cross-attention blocks inserted before every `every`-th decoder layer
of the language model. A Perceiver resampler turns each image into `num_latents`
tokens; the text of a row attends to the latents of that row's images. The blocks'
tanh gates start at zero, so at initialisation the LM computes exactly what it computed
alone; training the connector with the LM frozen (stage 1) opens them.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from ocelli.model.connectors.attention import GatedCrossAttentionBlock, QueryResampler
from ocelli.model.connectors.base import require_divisible_heads, require_positive_ints
from ocelli.model.connectors.feature_level import FeatureLevelConnector
from ocelli.model.registry import register_connector


@register_connector("xattn")
class CrossAttentionConnector(FeatureLevelConnector):
    default_options = {"every": 1, "num_latents": 16, "resampler_layers": 1, "num_heads": 4}

    def __init__(self, vision_dim: int, text_dim: int, **options: Any) -> None:
        super().__init__(vision_dim, text_dim, **options)
        self.resampler = QueryResampler(
            vision_dim,
            text_dim,
            text_dim,
            self.options["num_latents"],
            self.options["resampler_layers"],
            self.options["num_heads"],
            self_attention=False,
            attend_to_queries=True,
        )
        self.blocks = nn.ModuleList()  # one per hooked layer; built by attach

    @classmethod
    def check_dimensions(cls, vision_dim: int, text_dim: int, options: dict[str, Any]) -> None:
        require_positive_ints(cls, options, "every", "num_latents", "resampler_layers", "num_heads")
        require_divisible_heads(cls, text_dim, options["num_heads"])

    def attach(self, language_model: nn.Module) -> None:
        layers = self.decoder_layers(language_model)
        hooked = range(0, len(layers), self.options["every"])
        if not self.blocks:
            self.blocks.extend(
                GatedCrossAttentionBlock(self.text_dim, self.options["num_heads"]) for _ in hooked
            )
        for block_index, layer_index in enumerate(hooked):
            layers[layer_index].register_forward_pre_hook(
                functools.partial(self._before_layer, block_index), with_kwargs=True
            )

    def encode(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.resampler(image_features)  # (num_images, num_latents, text_dim)

    def route(self, images: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch, max_images, num_latents, width = images.shape
        context = images.reshape(batch, max_images * num_latents, width)
        mask = present.repeat_interleave(num_latents, dim=1).unsqueeze(1)
        return context, mask

    def _before_layer(
        self, block_index: int, layer: nn.Module, args: tuple, kwargs: dict
    ) -> tuple[tuple, dict] | None:
        hidden_states = args[0] if args else kwargs["hidden_states"]
        routed = self.read_context(hidden_states.shape[0], kwargs.get("past_key_values"))
        if routed is None:
            return None  # a text-only prompt: the LM runs as it would alone
        hidden_states = self.blocks[block_index](hidden_states, *routed)
        if args:
            return (hidden_states, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden_states}
