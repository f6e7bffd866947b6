"""What every connector is: an nn.Module mapping vision features (B, N, vision_dim) to
language-model embeddings (B, M, text_dim), plus the class-level facts the config needs
before any weights exist (accepted options, token count, which widths it can bridge)."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from ocelli.errors import ConfigError


class Connector(nn.Module):
    """Base class. Subclasses set `default_options` (the keys of `connector_config` they
    accept, with defaults) and override `output_tokens` if they change the token count."""

    default_options: ClassVar[dict[str, Any]] = {}
    # encoder-free connectors (raw patches -> LM) set this to False and read pixels
    requires_vision_encoder: ClassVar[bool] = True

    def __init__(self, vision_dim: int, text_dim: int, **options: Any) -> None:
        super().__init__()
        self.vision_dim = vision_dim
        self.text_dim = text_dim
        self.options = self.resolve_options(options)

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
