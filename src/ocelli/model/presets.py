"""Named tiny presets, and how a component spec becomes a config.

A component (vision encoder or language model) is given to ocelli in one of three ways:

- a preset name registered here ("clip-tiny", "qwen2-tiny"), with keyword overrides in
  Hugging Face config names (hidden_size, num_hidden_layers, image_size, patch_size,
  vocab_size, ...);
- a config: a `PretrainedConfig` or a dict with `model_type`;
- a local checkpoint directory (its weights are loaded: the path real CLIP/Qwen take).

Presets are small enough to train on two CPU cores; real models come from directories.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import (
    AutoConfig,
    CLIPVisionConfig,
    ConvNextConfig,
    LlamaConfig,
    PretrainedConfig,
    Qwen2Config,
    Qwen2MoeConfig,
    SiglipVisionConfig,
)

from ocelli.errors import CheckpointError, ConfigError
from ocelli.model.checkpoints import read_config
from ocelli.model.registry import Registry, register_language_model, register_vision_encoder

ComponentSpec = str | os.PathLike | Mapping[str, Any] | PretrainedConfig


@dataclass
class Component:
    """A resolved spec: the config to build from, and the directory to load weights from."""

    config: PretrainedConfig
    checkpoint: Path | None = None


def make_config(
    config_class: type[PretrainedConfig],
    defaults: dict[str, Any],
    overrides: Mapping[str, Any],
    what: str,
) -> PretrainedConfig:
    """`config_class(**defaults | overrides)`, rejecting override keys the class lacks
    (HF configs would silently keep a misspelt key as an unused attribute)."""
    known = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(
            f"{what}: unknown override(s) {', '.join(unknown)} for {config_class.__name__}; "
            f"known: {', '.join(sorted(name for name in known if not name.startswith('_')))}"
        )
    return config_class(**{**defaults, **overrides})


def _transformer_defaults(overrides: Mapping[str, Any], hidden_size: int) -> dict[str, Any]:
    hidden = overrides.get("hidden_size", hidden_size)
    return {
        "hidden_size": hidden,
        "intermediate_size": 4 * hidden,
        "num_attention_heads": max(1, hidden // 32),
    }


@register_vision_encoder("clip-tiny")
def clip_tiny(**overrides: Any) -> CLIPVisionConfig:
    """CLIP ViT, 4 layers, width 192, 64px images in 8px patches (64 tokens + CLS)."""
    defaults = {
        **_transformer_defaults(overrides, 192),
        "num_hidden_layers": 4,
        "image_size": 64,
        "patch_size": 8,
    }
    return make_config(CLIPVisionConfig, defaults, overrides, "clip-tiny")


@register_vision_encoder("siglip-tiny")
def siglip_tiny(**overrides: Any) -> SiglipVisionConfig:
    """SigLIP ViT, 4 layers, width 192, 64px images in 8px patches (64 tokens)."""
    defaults = {
        **_transformer_defaults(overrides, 192),
        "num_hidden_layers": 4,
        "image_size": 64,
        "patch_size": 8,
    }
    return make_config(SiglipVisionConfig, defaults, overrides, "siglip-tiny")


@register_vision_encoder("convnext-tiny")
def convnext_tiny(**overrides: Any) -> ConvNextConfig:
    """ConvNeXt with 3 stages (48, 96, 192 channels); 64px images give a 4x4 last stage."""
    hidden_sizes = list(overrides.get("hidden_sizes", [48, 96, 192]))
    defaults = {
        "num_stages": len(hidden_sizes),
        "hidden_sizes": hidden_sizes,
        "depths": [2] * len(hidden_sizes),
        "image_size": 64,
        "patch_size": 4,
    }
    return make_config(ConvNextConfig, defaults, overrides, "convnext-tiny")


def _lm_defaults(overrides: Mapping[str, Any]) -> dict[str, Any]:
    hidden = overrides.get("hidden_size", 256)
    heads = overrides.get("num_attention_heads", max(1, hidden // 64))
    return {
        "hidden_size": hidden,
        "intermediate_size": (hidden * 8 // 3 + 7) // 8 * 8,
        "num_hidden_layers": 4,
        "num_attention_heads": heads,
        "vocab_size": 1024,
        "max_position_embeddings": 2048,
    }


@register_language_model("llama-tiny")
def llama_tiny(**overrides: Any) -> LlamaConfig:
    """Llama, 4 layers, width 256, vocabulary 1024, untied output head."""
    defaults = {**_lm_defaults(overrides), "tie_word_embeddings": False}
    return make_config(LlamaConfig, defaults, overrides, "llama-tiny")


@register_language_model("qwen2-tiny")
def qwen2_tiny(**overrides: Any) -> Qwen2Config:
    """Qwen2, 4 layers, width 256, grouped-query attention, tied embeddings (as Qwen2-0.5B)."""
    defaults = _lm_defaults(overrides)
    defaults.update(
        num_key_value_heads=max(1, defaults["num_attention_heads"] // 2), tie_word_embeddings=True
    )
    return make_config(Qwen2Config, defaults, overrides, "qwen2-tiny")


@register_language_model("qwen2-moe-tiny")
def qwen2_moe_tiny(**overrides: Any) -> Qwen2MoeConfig:
    """Qwen2-MoE, 4 layers, width 256, 4 experts (2 per token) plus a shared expert.
    The router's load-balancing loss is on (output_router_logits), so training adds
    router_aux_loss_coef * aux_loss to the loss; 0.01 as in the Switch Transformer,
    since the tiny model trains for few steps and Qwen's 0.001 barely acts there."""
    defaults = _lm_defaults(overrides)
    hidden = defaults["hidden_size"]
    defaults.update(
        num_key_value_heads=max(1, defaults["num_attention_heads"] // 2),
        tie_word_embeddings=True,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=hidden,
        shared_expert_intermediate_size=hidden,
        output_router_logits=True,
        router_aux_loss_coef=0.01,
    )
    return make_config(Qwen2MoeConfig, defaults, overrides, "qwen2-moe-tiny")


def resolve_component(
    spec: ComponentSpec, registry: Registry, what: str, overrides: Mapping[str, Any] | None = None
) -> Component:
    """Turn a preset name, config, dict or checkpoint directory into a `Component`."""
    overrides = dict(overrides or {})
    if isinstance(spec, PretrainedConfig):
        return Component(_updated(spec, overrides, what) if overrides else spec)
    if isinstance(spec, Mapping):
        return Component(config_from_dict({**spec, **overrides}, what))
    if isinstance(spec, (str, os.PathLike)):
        name = os.fspath(spec)
        if name in registry:
            return Component(registry.get(name)(**overrides))
        path = Path(name).expanduser()
        if path.is_dir():
            if overrides:
                raise ConfigError(
                    f"{what} overrides {sorted(overrides)} were given with checkpoint directory "
                    f"{path}; overrides apply to presets and configs only"
                )
            config_dict = read_config(path, what)
            return Component(config_from_dict(config_dict, what), checkpoint=path)
        if os.sep in name or name.startswith((".", "~")):
            raise CheckpointError(f"{what} checkpoint directory {path} does not exist")
        registry.get(name)  # raises RegistryError listing the presets
    raise ConfigError(
        f"{what} must be a preset name, a config (dict or PretrainedConfig) or a checkpoint "
        f"directory; got {type(spec).__name__}"
    )


def config_from_dict(data: Mapping[str, Any], what: str) -> PretrainedConfig:
    """The Hugging Face config for a dict with a model_type (as config.json holds)."""
    data = dict(data)
    model_type = data.pop("model_type", None)
    if not model_type:
        raise ConfigError(f"{what} config dict needs a model_type (e.g. clip_vision_model, llama)")
    try:
        return AutoConfig.for_model(model_type, **data)
    except ValueError as exc:
        raise ConfigError(f"{what} config: {exc}") from None


def _updated(config: PretrainedConfig, overrides: dict[str, Any], what: str) -> PretrainedConfig:
    data = config.to_dict()
    unknown = sorted(set(overrides) - set(data))
    if unknown:
        raise ConfigError(
            f"{what}: unknown override(s) {', '.join(unknown)} for {type(config).__name__}"
        )
    return config.__class__.from_dict({**data, **overrides})
