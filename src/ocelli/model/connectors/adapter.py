"""LLaMA-Adapter: in the top `num_adapted_layers` decoder layers, the tokens also attend
to `prompt_length` learned prompt vectors, through the layer's own q/k/v/o projections,
with a per-head gate that starts at zero (so at initialisation the LM is unchanged).
As in the multimodal LLaMA-Adapter, each image's global feature (mean over its tokens,
projected) is added to every prompt vector of its row; a row's several images are
averaged, and a row without images gets the prompts alone.

Simplifications: the prompt keys and the queries attend without rotary positions (the
prompt has no place in the sequence); the adapter output skips o_proj's bias so a zero
gate adds exactly nothing.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from ocelli.errors import ConfigError
from ocelli.model.connectors.base import require_positive_ints
from ocelli.model.connectors.feature_level import FeatureLevelConnector
from ocelli.model.registry import register_connector


@register_connector("adapter")
class AdapterConnector(FeatureLevelConnector):
    # num_adapted_layers None = every layer
    default_options = {"prompt_length": 8, "num_adapted_layers": None}

    def __init__(self, vision_dim: int, text_dim: int, **options: Any) -> None:
        super().__init__(vision_dim, text_dim, **options)
        self.visual_projection = nn.Linear(vision_dim, text_dim)
        # sized by attach, once the LM's depth and head count are known
        self.prompts = nn.Parameter(torch.empty(0))
        self.gates = nn.Parameter(torch.empty(0))

    @classmethod
    def check_dimensions(cls, vision_dim: int, text_dim: int, options: dict[str, Any]) -> None:
        require_positive_ints(cls, options, "prompt_length")
        if options["num_adapted_layers"] is not None:
            require_positive_ints(cls, options, "num_adapted_layers")

    @classmethod
    def check_language_model(cls, text_config: Any, options: dict[str, Any]) -> None:
        super().check_language_model(text_config, options)
        wanted = options["num_adapted_layers"]
        if wanted is not None and wanted > text_config.num_hidden_layers:
            raise ConfigError(
                f"connector adapter: connector_config.num_adapted_layers {wanted} is more than "
                f"the language model's {text_config.num_hidden_layers} layers"
            )

    def attach(self, language_model: nn.Module) -> None:
        layers = self.decoder_layers(language_model)
        count = self.options["num_adapted_layers"] or len(layers)
        num_heads = language_model.config.num_attention_heads
        if self.prompts.numel() == 0:
            length = self.options["prompt_length"]
            self.prompts = nn.Parameter(torch.randn(count, length, self.text_dim) * 0.02)
            self.gates = nn.Parameter(torch.zeros(count, num_heads))
        for index, layer in enumerate(layers[len(layers) - count :]):
            layer.self_attn.register_forward_hook(
                functools.partial(self._after_attention, index), with_kwargs=True
            )

    def encode(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.visual_projection(image_features.mean(dim=1))  # (num_images, text_dim)

    def route(self, images: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        counts = present.sum(dim=1, keepdim=True).clamp(min=1)
        return images.sum(dim=1) / counts  # (batch, text_dim); zeros for rows without images

    def _after_attention(
        self, index: int, attention: nn.Module, args: tuple, kwargs: dict, output: Any
    ) -> Any:
        hidden_states = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        prefix = self.prompts[index].unsqueeze(0)
        visual = self.read_context(hidden_states.shape[0], kwargs.get("past_key_values"))
        if visual is not None:
            prefix = prefix + visual.unsqueeze(1)
        added = self._attend_to_prefix(attention, hidden_states, prefix, self.gates[index])
        return (output[0] + added, *output[1:])

    @staticmethod
    def _attend_to_prefix(
        attention: nn.Module, hidden_states: torch.Tensor, prefix: torch.Tensor, gate: torch.Tensor
    ) -> torch.Tensor:
        batch, length, _ = hidden_states.shape
        head_dim, groups = attention.head_dim, attention.num_key_value_groups
        query = attention.q_proj(hidden_states).view(batch, length, -1, head_dim).transpose(1, 2)
        prefix = prefix.expand(batch, -1, -1)
        key = attention.k_proj(prefix).view(batch, prefix.shape[1], -1, head_dim).transpose(1, 2)
        value = attention.v_proj(prefix).view(batch, prefix.shape[1], -1, head_dim).transpose(1, 2)
        key = key.repeat_interleave(groups, dim=1)  # grouped-query attention: as repeat_kv
        value = value.repeat_interleave(groups, dim=1)
        weights = torch.softmax(query @ key.transpose(-1, -2) * attention.scaling, dim=-1)
        weights = weights * gate.tanh().view(1, -1, 1, 1)
        attended = (weights @ value).transpose(1, 2).reshape(batch, length, -1)
        return nn.functional.linear(attended, attention.o_proj.weight)
