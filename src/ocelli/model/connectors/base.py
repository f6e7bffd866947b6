"""What every connector is: an nn.Module mapping vision features (B, N, vision_dim) to
language-model embeddings (B, M, text_dim), plus the class-level facts the config needs
before any weights exist (accepted options, token count, which widths it can bridge).

Every connector first standardises its input per channel with statistics measured on the
training images (`calibrate`). An encoder's raw features are often dominated by one
vector shared by every token (a ConvNeXt trained from scratch: norm 18 of 19.6 per
token); the connector would pass that on and drown what differs between tokens.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ocelli.errors import ConfigError


class Connector(nn.Module):
    """Base class. Subclasses set `default_options` (the keys of `connector_config` they
    accept, with defaults) and override `output_tokens` if they change the token count."""

    default_options: ClassVar[dict[str, Any]] = {}
    # encoder-free connectors (raw patches -> LM) set this to False and read pixels
    requires_vision_encoder: ClassVar[bool] = True
    # connectors whose weights act through hooks on the LM's layers (xattn, adapter,
    # visual-expert) set this: a copy of them (LoRA's modules_to_save) would not be seen
    acts_inside_language_model: ClassVar[bool] = False

    def __init__(self, vision_dim: int, text_dim: int, **options: Any) -> None:
        super().__init__()
        self.vision_dim = vision_dim
        self.text_dim = text_dim
        self.options = self.resolve_options(options)
        # identity until calibrated; saved with the weights
        self.register_buffer("feature_mean", torch.zeros(vision_dim))
        self.register_buffer("feature_std", torch.ones(vision_dim))

    def standardize(self, image_features: torch.Tensor) -> torch.Tensor:
        return (image_features - self.feature_mean) / self.feature_std

    @torch.no_grad()
    def calibrate(self, image_features: torch.Tensor, eps: float = 1e-5) -> None:
        """Set the per-channel mean and standard deviation from (..., vision_dim) features."""
        flat = image_features.reshape(-1, self.vision_dim).double()
        self.feature_mean.copy_(flat.mean(0))
        self.feature_std.copy_(flat.std(0) + eps)

    @classmethod
    def resolve_options(cls, options: dict[str, Any] | None) -> dict[str, Any]:
        """`default_options` updated with `options`; unknown keys are a ConfigError."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(cls.default_options))
        if unknown:
            accepted = ", ".join(sorted(cls.default_options)) or "none"
            raise ConfigError(
                f"connector_config has unknown key(s) {', '.join(unknown)} for connector "
                f"{cls.__name__}; accepted keys: {accepted}"
            )
        return {**cls.default_options, **options}

    @classmethod
    def check_dimensions(cls, vision_dim: int, text_dim: int, options: dict[str, Any]) -> None:
        """Raise ConfigError if this connector cannot map vision_dim to text_dim."""

    @classmethod
    def output_tokens(cls, num_input_tokens: int, options: dict[str, Any]) -> int:
        """Tokens per image after the connector; compressing connectors override this."""
        return num_input_tokens

    def num_output_tokens(self, num_input_tokens: int) -> int:
        return type(self).output_tokens(num_input_tokens, self.options)

    # -- feature-level connectors (xattn, adapter) also act inside the language model --
    @classmethod
    def check_language_model(cls, text_config: Any, options: dict[str, Any]) -> None:
        """Raise ConfigError if this connector cannot work with this LM (by its config)."""

    def attach(self, language_model: nn.Module) -> None:
        """Called once the LM exists; feature-level connectors hook into its layers here."""

    def bind_images(self, is_image: torch.Tensor | None) -> None:
        """Called before each LM pass with the image-token positions (batch, length), or
        None for a text-only prompt; feature-level connectors route images to rows."""


def require_positive_ints(connector: type, options: dict[str, Any], *keys: str) -> None:
    """ConfigError naming the first of `keys` whose option is not an int >= 1."""
    for key in keys:
        value = options[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"connector {connector.__name__}: connector_config.{key} must be a positive "
                f"integer, got {value!r}"
            )


def require_divisible_heads(connector: type, width: int, num_heads: int) -> None:
    if width % num_heads:
        raise ConfigError(
            f"connector {connector.__name__}: width {width} is not divisible by "
            f"connector_config.num_heads {num_heads}; pick num_heads dividing {width} "
            "(or set hidden_size)"
        )
