"""CogVLM's visual expert: image tokens go through their own copy of each decoder
layer's query/key/value projections and feed-forward, text tokens through the LM's.
Image and text tokens still attend to each other in one attention. The image tokens
come from a two-layer MLP, as with `mlp`.

The experts start as copies of the LM's weights (as in CogVLM), so at initialisation
the model computes what the LM with an MLP projector computes; stage 1 trains the
experts and the projector with the LM frozen. They roughly double the parameters of
the attention projections and the feed-forward. Dense LMs only: in a mixture-of-experts
LM the feed-forward is itself routed.

The image positions are set for the pass in which the images arrive; later generation
steps (new text tokens read against the KV cache) use the LM's own weights.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import torch
from torch import nn

from ocelli.errors import ConfigError
from ocelli.model.connectors.base import Connector
from ocelli.model.connectors.feature_level import FeatureLevelConnector
from ocelli.model.connectors.spatial import projector
from ocelli.model.registry import register_connector

DENSE_LANGUAGE_MODELS = ("llama", "mistral", "qwen2")
EXPERT_PROJECTIONS = ("q_proj", "k_proj", "v_proj")


@register_connector("visual-expert")
class VisualExpertConnector(Connector):
    acts_inside_language_model = True
    default_options: dict[str, Any] = {}

    def __init__(self, vision_dim: int, text_dim: int, **options: Any) -> None:
        super().__init__(vision_dim, text_dim, **options)
        self.projector = projector(vision_dim, text_dim)
        self.experts = nn.ModuleList()  # per decoder layer; copied from the LM by attach
        self._image_positions: torch.Tensor | None = None
        self._fresh = False  # positions bound for the LM pass about to run

    @classmethod
    def check_language_model(cls, text_config: Any, options: dict[str, Any]) -> None:
        if text_config.model_type not in DENSE_LANGUAGE_MODELS:
            raise ConfigError(
                f"connector visual-expert copies the attention projections and feed-forward "
                f"of dense LMs ({', '.join(DENSE_LANGUAGE_MODELS)}); got "
                f"{text_config.model_type!r}: use one of those or another connector"
            )

    def attach(self, language_model: nn.Module) -> None:
        layers = FeatureLevelConnector.decoder_layers(language_model)
        if not self.experts:
            self.experts.extend(_copy_expert(layer) for layer in layers)
        for layer, expert in zip(layers, self.experts, strict=True):
            for name in EXPERT_PROJECTIONS:
                getattr(layer.self_attn, name).register_forward_hook(
                    functools.partial(self._route, expert[name])
                )
            layer.mlp.register_forward_hook(functools.partial(self._route, expert["mlp"]))
        language_model.register_forward_pre_hook(self._before_language_model)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.projector(self.standardize(image_features))

    def bind_images(self, is_image: torch.Tensor | None) -> None:
        self._image_positions = is_image
        self._fresh = is_image is not None

    def _before_language_model(self, module: nn.Module, args: tuple) -> None:
        # positions hold for the one pass they were bound for (recomputations under
        # gradient checkpointing included), not for the generation steps after it
        if not self._fresh:
            self._image_positions = None
        self._fresh = False

    def _route(self, expert: nn.Module, module: nn.Module, args: tuple, output: Any) -> Any:
        positions = self._image_positions
        if positions is None or not isinstance(output, torch.Tensor):
            return None
        if positions.shape != output.shape[:2]:
            return None
        return torch.where(positions.unsqueeze(-1), expert(args[0]), output)


def _copy_expert(layer: nn.Module) -> nn.ModuleDict:
    parts = {name: getattr(layer.self_attn, name) for name in EXPERT_PROJECTIONS}
    return nn.ModuleDict({**copy.deepcopy(parts), "mlp": copy.deepcopy(layer.mlp)})
