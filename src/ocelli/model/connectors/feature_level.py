"""Feature-level connectors (`xattn`, `adapter`): the image reaches the language model
inside its layers rather than as a sequence of tokens.

Each image still takes one placeholder position in input_ids (its token embedding is a
learned marker), so prompts, the processor and batching work as for every connector.
The connector's forward encodes the images; `bind_images` then routes them to the batch
rows holding their placeholders, and PyTorch hooks on the LM's decoder layers read that
routed context. Hooks rather than wrapped layers keep the LM's parameter names as they
are, so LoRA targets, checkpoints and the LM's own loading code are unchanged.

The context is state kept on the connector (as OpenFlamingo does): it persists across
generation steps, which see only the new token, and is replaced by the next pass with
images or cleared by the next text-only prefill. Limits: one model instance serves one
batch at a time (a pass reading another batch is refused, see `read_context`), and
every token of a row sees every image of that row (no per-image causal masking as in
Flamingo).
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn

from ocelli.errors import ConfigError
from ocelli.model.connectors.base import Connector

# Decoder-only LMs whose layers sit in `.model.layers` and whose attention has
# q_proj/k_proj/v_proj/o_proj, which the hooks rely on.
HOOKABLE_LANGUAGE_MODELS = ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe")


class FeatureLevelConnector(Connector):
    """Base class: subclasses implement `encode` (images -> per-image context),
    `route` (per-row context from the images and their rows) and `attach`."""

    acts_inside_language_model = True

    def __init__(self, vision_dim: int, text_dim: int, **options: Any) -> None:
        super().__init__(vision_dim, text_dim, **options)
        self.image_marker = nn.Parameter(torch.randn(text_dim) * 0.02)
        self._encoded: torch.Tensor | None = None  # the last forward's images
        self.context: Any = None  # what the hooks read; see bind_images
        self._reader: tuple[int, Any] | None = None

    @classmethod
    def output_tokens(cls, num_input_tokens: int, options: dict[str, Any]) -> int:
        return 1  # the placeholder; the image itself enters through the layers

    @classmethod
    def check_language_model(cls, text_config: Any, options: dict[str, Any]) -> None:
        if text_config.model_type not in HOOKABLE_LANGUAGE_MODELS:
            raise ConfigError(
                f"connector {cls.__name__} hooks into the language model's decoder layers, "
                f"which ocelli knows how to do for {', '.join(HOOKABLE_LANGUAGE_MODELS)}; "
                f"got {text_config.model_type!r}: use one of those or a token-level connector"
            )

    @staticmethod
    def decoder_layers(language_model: nn.Module) -> nn.ModuleList:
        layers = getattr(getattr(language_model, "model", None), "layers", None)
        if not isinstance(layers, nn.ModuleList):
            raise ConfigError(
                f"{type(language_model).__name__} has no decoder layers at .model.layers for a "
                "feature-level connector to hook into; use a token-level connector"
            )
        return layers

    def encode(self, image_features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def route(self, images: torch.Tensor, present: torch.Tensor) -> Any:
        """The hooks' context from `images` (batch, max_images, ...) padded per row and
        `present` (batch, max_images), False at padding."""
        raise NotImplementedError

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        self._encoded = self.encode(self.standardize(image_features))
        marker = self.image_marker.to(self._encoded.dtype)
        return marker.expand(image_features.shape[0], 1, -1)

    def bind_images(self, is_image: torch.Tensor | None) -> None:
        self._reader: tuple[int, Any] | None = None  # the batch the context was read by
        if is_image is None or self._encoded is None:
            self.context = None
            return
        images, self._encoded = self._encoded, None
        # one placeholder per image, in the order of the images (as merge_image_features)
        rows = is_image.nonzero()[:, 0]
        counts = torch.bincount(rows, minlength=is_image.shape[0])
        slots = torch.arange(len(rows), device=rows.device) - (counts.cumsum(0) - counts)[rows]
        width = int(counts.max()) if len(rows) else 0
        padded = images.new_zeros(is_image.shape[0], width, *images.shape[1:])
        present = torch.zeros(is_image.shape[0], width, dtype=torch.bool, device=rows.device)
        padded[rows, slots] = images
        present[rows, slots] = True
        self.context = self.route(padded, present)

    def read_context(self, batch_size: int, cache: Any) -> Any:
        """The routed images for a hook, refused to a batch they were not routed for: a
        serving engine that joins and drops rows between steps (continuous batching)
        decodes a batch other than the one whose images were bound."""
        if self.context is None:
            return None
        reader = (batch_size, None if cache is None else weakref.ref(cache))
        if self._reader is None:
            self._reader = reader
        elif reader != self._reader:
            raise ConfigError(
                f"connector {type(self).__name__} holds the images of a batch of "
                f"{self._reader[0]} rows, but the language model is now reading another batch "
                f"({batch_size} rows or another KV cache); it cannot follow rows that join or "
                "leave between steps: generate with model.generate, or serve with a "
                "token-level connector"
            )
        return self.context
