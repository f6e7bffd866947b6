"""Language models: any Hugging Face causal LM (Llama, Qwen2, ...), built from a config
or loaded from a local checkpoint directory through AutoModelForCausalLM.

The LM is used whole (decoder + lm_head), so its own loss, KV cache, attention
implementations and gradient checkpointing all keep working inside ocelli's model.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM, PretrainedConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from ocelli.errors import CheckpointError, ConfigError
from ocelli.model.checkpoints import load_checked, read_config
from ocelli.model.presets import Component, ComponentSpec, resolve_component
from ocelli.model.registry import LANGUAGE_MODELS


def check_causal_lm_type(model_type: str, where: str) -> None:
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ConfigError(
            f"{where}: model_type {model_type!r} is not a causal language model that "
            "AutoModelForCausalLM can build; use e.g. llama, qwen2, mistral, gemma"
        )


def language_model_config(component: Component, vocab_size: int | None = None) -> PretrainedConfig:
    """The config the LM of `component` will have once it serves a tokenizer of
    `vocab_size` tokens: a pretrained LM only grows (its trained rows are kept), a new
    one matches the tokenizer exactly."""
    config = copy.deepcopy(component.config)
    check_causal_lm_type(config.model_type, "language model")
    if vocab_size is not None:
        grow_only = component.checkpoint is not None
        config.vocab_size = max(config.vocab_size, vocab_size) if grow_only else vocab_size
    return config


def build_language_model(
    spec: ComponentSpec, vocab_size: int | None = None, **overrides: Any
) -> PreTrainedModel:
    """A causal LM from a preset name or config (random weights, `overrides` applied) or
    from a local checkpoint directory (weights loaded), sized for `vocab_size` tokens."""
    component = resolve_component(spec, LANGUAGE_MODELS, "language model", overrides)
    if component.checkpoint is not None:
        return load_language_model(component.checkpoint, vocab_size)
    config = language_model_config(component, vocab_size)
    return AutoModelForCausalLM.from_config(config, trust_remote_code=False)


def load_language_model(path: str | Path, vocab_size: int | None = None) -> PreTrainedModel:
    """A causal LM from a local directory written by save_pretrained (safetensors), its
    embeddings grown to `vocab_size` when the tokenizer is larger."""
    model_type = read_config(path, "language model")["model_type"]
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise CheckpointError(
            f"language model checkpoint {path} holds a {model_type!r} model, which is not a "
            "causal language model; give a Llama/Qwen2-style checkpoint directory"
        )
    model = load_checked(AutoModelForCausalLM.from_pretrained, path, "language model")
    if vocab_size is not None:
        resize_vocab(model, vocab_size)
    return model


def resize_vocab(model: PreTrainedModel, vocab_size: int) -> None:
    """Grow input embeddings (and an untied head) to `vocab_size` when the tokenizer has
    more tokens than the LM (e.g. after adding <image>); never shrink trained rows."""
    if vocab_size > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(vocab_size)
