"""`OcelliConfig`: one serialisable description of a whole model (vision encoder,
connector, language model, and how they meet), checked when it is built so a bad
combination fails before any weights are allocated."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

from ocelli.errors import ConfigError
from ocelli.model.anyres import AnyResConfig, check_anyres
from ocelli.model.encoders import vision_adapter
from ocelli.model.language_models import check_causal_lm_type
from ocelli.model.presets import config_from_dict
from ocelli.model.registry import CONNECTORS, VISION_ADAPTERS


class OcelliConfig(PretrainedConfig):
    r"""Configuration of an `OcelliForConditionalGeneration`.

    Args:
        vision_config: config of the vision encoder (a dict with `model_type` or a
            PretrainedConfig: clip_vision_model, siglip_vision_model, convnext); None only
            for encoder-free connectors that read pixels themselves.
        text_config: config of any causal LM (llama, qwen2, ...).
        connector: registered connector name ("linear", "mlp").
        connector_config: the connector's options; saved with its defaults filled in.
        vision_feature_layer: hidden state the features come from (-2 = penultimate).
        keep_cls: keep CLIP's CLS token among the image tokens.
        image_token_id: token id whose positions receive the image features.
        pad_token_id: padding token id of the tokenizer.
        anyres: None, or high-resolution tiling (see anyres.py): {"grid_pinpoints":
            [[height, width], ...], "thumbnail": true, "newline": true}; saved with its
            defaults filled in. `num_image_tokens` is then the count per tile, and an
            image's count depends on its grid (`AnyResConfig.num_tokens`).
    """

    model_type = "ocelli"
    # An OcelliConfig needs its parts: transformers must not build a default one to diff
    # against when saving (older 5.x releases do unless this is set).
    has_no_defaults_at_init = True
    # The plain `sub_configs` mapping (not transformers 5.23's SubConfigSpec) keeps the
    # class working across transformers 5.x; dicts are turned into configs below.
    sub_configs = {"vision_config": AutoConfig, "text_config": AutoConfig}

    vision_config: dict | PretrainedConfig | None = None
    text_config: dict | PretrainedConfig | None = None
    connector: str = "mlp"
    connector_config: dict | None = None
    vision_feature_layer: int = -2
    keep_cls: bool = False
    image_token_id: int | None = None
    pad_token_id: int | None = None
    anyres: dict | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        if isinstance(self.vision_config, dict):
            # an encoder type without an adapter fails here, listing the supported ones
            VISION_ADAPTERS.get(self.vision_config.get("model_type", "clip_vision_model"))
            self.vision_config = config_from_dict(
                {"model_type": "clip_vision_model", **self.vision_config}, "vision_config"
            )
        if self.text_config is None or isinstance(self.text_config, dict):
            text = {"model_type": "llama", **(self.text_config or {})}
            check_causal_lm_type(text["model_type"], "text_config")
            self.text_config = config_from_dict(text, "text_config")
        super().__post_init__(**kwargs)
        connector_class = CONNECTORS.get(self.connector)
        self.connector_config = connector_class.resolve_options(self.connector_config)
        if self.anyres is not None:
            if not isinstance(self.anyres, dict):
                raise ConfigError(f"anyres must be a mapping or None, got {self.anyres!r}")
            self.anyres = AnyResConfig.from_dict(self.anyres).to_dict()
        # The LM's own choice decides: tied checkpoints (Qwen2) must stay tied.
        self.tie_word_embeddings = bool(
            self.tie_word_embeddings or self.text_config.tie_word_embeddings
        )
        self._check(connector_class)

    def _check(self, connector_class: type) -> None:
        check_causal_lm_type(self.text_config.model_type, "text_config")
        if self.vision_config is None:
            if connector_class.requires_vision_encoder:
                raise ConfigError(
                    f"connector {self.connector!r} needs a vision encoder but vision_config is None; "
                    "give a vision config (e.g. the preset 'clip-tiny') or an encoder-free connector"
                )
        elif not connector_class.requires_vision_encoder:
            raise ConfigError(
                f"connector {self.connector!r} reads the pixels itself and takes no vision "
                "encoder, but a vision_config was given; pass vision=None (from_components) "
                "or pick a connector that reads encoder features"
            )
        else:
            vision_adapter(self.vision_config).check(
                self.vision_config, self.vision_feature_layer, self.keep_cls
            )
        connector_class.check_dimensions(
            self.vision_hidden_size, self.text_config.hidden_size, self.connector_config
        )
        # token counts a connector cannot produce (a grid not divisible by its factor)
        # fail here, before any weights exist
        connector_class.output_tokens(self.num_vision_tokens, self.connector_config)
        connector_class.check_language_model(self.text_config, self.connector_config)
        if self.anyres is not None:
            check_anyres(self, connector_class)
        vocab_size = self.text_config.vocab_size
        if not isinstance(self.image_token_id, int) or not 0 <= self.image_token_id < vocab_size:
            raise ConfigError(
                f"image_token_id must be a token id below the language model's vocab_size "
                f"{vocab_size}, got {self.image_token_id!r}; add the image token to the tokenizer "
                "and pass vocab_size=len(tokenizer) so the embeddings are resized"
            )
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < vocab_size:
            raise ConfigError(
                f"pad_token_id {self.pad_token_id} is outside the vocabulary (size {vocab_size})"
            )

    @property
    def vision_hidden_size(self) -> int:
        """Width of the features the connector receives (0 without a vision encoder)."""
        if self.vision_config is None:
            return 0
        return vision_adapter(self.vision_config).feature_size(
            self.vision_config, self.vision_feature_layer
        )

    @property
    def num_vision_tokens(self) -> int:
        """Features per image before the connector (0 without a vision encoder)."""
        if self.vision_config is None:
            return 0
        return vision_adapter(self.vision_config).count_tokens(
            self.vision_config, self.vision_feature_layer, self.keep_cls
        )

    @property
    def num_image_tokens(self) -> int:
        """Image-token positions per image in input_ids (tokens after the connector);
        with AnyRes, per crop (tile or thumbnail)."""
        return CONNECTORS.get(self.connector).output_tokens(
            self.num_vision_tokens, self.connector_config
        )


AutoConfig.register("ocelli", OcelliConfig, exist_ok=True)
