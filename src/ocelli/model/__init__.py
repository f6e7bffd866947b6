"""ocelli.model: multimodal LLMs from a vision encoder, a connector and a language model.

    model = OcelliForConditionalGeneration.from_components(
        "clip-tiny", "qwen2-tiny", connector="mlp", image_token_id=tok.image_token_id,
        vocab_size=len(tok))
    model.save_pretrained(dir); OcelliForConditionalGeneration.from_pretrained(dir)
    export_llava_hf(dir, out_dir, processor_dir)   # for vLLM / transformers' Llava

Components are registered by name (see registry.py); presets.py holds the tiny ones.
"""

from typing import Any

from transformers import PretrainedConfig

from ocelli.model import connectors, presets  # noqa: F401  (registers the built-ins)
from ocelli.model.configuration import OcelliConfig
from ocelli.model.connectors import Connector
from ocelli.model.encoders import (
    CLIPEncoder,
    ConvNextEncoder,
    SiglipEncoder,
    VisionEncoder,
    build_vision_encoder,
    load_vision_encoder,
)
from ocelli.model.export import export_llava_hf
from ocelli.model.language_models import build_language_model, load_language_model, resize_vocab
from ocelli.model.modeling import OcelliCausalLMOutput, OcelliForConditionalGeneration
from ocelli.model.peft import apply_lora, load_lora, merge_lora, save_lora
from ocelli.model.presets import Component, resolve_component
from ocelli.model.qlora import QuantizedLinear, dequantize_language_model, quantize_language_model
from ocelli.model.registry import (
    CONNECTORS,
    LANGUAGE_MODELS,
    VISION_ADAPTERS,
    VISION_ENCODERS,
    register_connector,
    register_language_model,
    register_vision_adapter,
    register_vision_encoder,
)


def vision_preset(name: str, **overrides: Any) -> PretrainedConfig:
    """The vision config of a registered preset ("clip-tiny"), with overrides."""
    return VISION_ENCODERS.get(name)(**overrides)


def language_model_preset(name: str, **overrides: Any) -> PretrainedConfig:
    """The causal-LM config of a registered preset ("llama-tiny"), with overrides."""
    return LANGUAGE_MODELS.get(name)(**overrides)


__all__ = [
    "CLIPEncoder",
    "CONNECTORS",
    "Component",
    "Connector",
    "ConvNextEncoder",
    "LANGUAGE_MODELS",
    "OcelliCausalLMOutput",
    "OcelliConfig",
    "QuantizedLinear",
    "OcelliForConditionalGeneration",
    "SiglipEncoder",
    "VISION_ADAPTERS",
    "VISION_ENCODERS",
    "VisionEncoder",
    "apply_lora",
    "build_language_model",
    "build_vision_encoder",
    "dequantize_language_model",
    "export_llava_hf",
    "language_model_preset",
    "load_language_model",
    "load_lora",
    "load_vision_encoder",
    "merge_lora",
    "quantize_language_model",
    "register_connector",
    "register_language_model",
    "register_vision_adapter",
    "register_vision_encoder",
    "resize_vocab",
    "resolve_component",
    "save_lora",
    "vision_preset",
]
