"""LoRA on the language model, through PEFT.

PEFT matches a plain list of module names anywhere in the model, which would also put
adapters on the vision tower's q_proj/v_proj; ocelli turns the list into a regex that
only matches inside `language_model`. Adapters are saved and loaded on their own
(adapter_config.json + adapter_model.safetensors) and can be merged back for export.

`quantize="nf4"` or `"int8"` makes it QLoRA-style: the frozen LM's linear layers are
stored quantized (qlora.py) under float32 adapters. Merging then folds the adapters
into the dequantized weights, the base they were trained against.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from peft import LoraConfig, PeftModel, get_peft_model

from ocelli.errors import CheckpointError, ConfigError
from ocelli.model.modeling import OcelliForConditionalGeneration
from ocelli.model.qlora import SCHEMES, dequantize_language_model, quantize_language_model

LANGUAGE_MODEL_TARGETS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def language_model_targets(module_names: Sequence[str]) -> str:
    """A PEFT target regex matching the named linear layers of the language model only."""
    names = "|".join(re.escape(name) for name in module_names)
    return rf"language_model\..*\.({names})"


def apply_lora(
    model: OcelliForConditionalGeneration,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.05,
    target_modules: Sequence[str] | str = LANGUAGE_MODEL_TARGETS,
    modules_to_save: Sequence[str] = (),
    quantize: str | None = None,
    block_size: int = 64,
) -> PeftModel:
    """Wrap `model` with LoRA adapters on its language model; every other weight is
    frozen. `target_modules` is a list of layer names (restricted to the LM) or, for full
    control, a regex string used as is. `modules_to_save` (e.g. ["connector"]) stay fully
    trainable and are saved with the adapter. `quantize` ("nf4", "int8") stores the
    frozen LM's linear layers quantized in blocks of `block_size` (QLoRA-style)."""
    _check_scheme(quantize)
    if not isinstance(target_modules, str):
        if not target_modules:
            raise ConfigError(
                "apply_lora: target_modules is empty; name the LM layers to adapt (e.g. q_proj)"
            )
        target_modules = language_model_targets(target_modules)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        modules_to_save=list(modules_to_save) or None,
        bias="none",
    )
    try:
        peft_model = get_peft_model(model, config)
    except ValueError as exc:  # PEFT's "target modules not found"
        raise ConfigError(f"apply_lora: {exc}") from None
    if quantize is not None:
        # after PEFT has wrapped the float layers: it only adapts nn.Linear
        quantize_language_model(peft_model, quantize, block_size)
    return peft_model


def save_lora(model: PeftModel, directory: str | Path) -> Path:
    """Save only the adapter weights (safetensors) and their config."""
    if not isinstance(model, PeftModel):
        raise ConfigError("save_lora needs the model returned by apply_lora or load_lora")
    model.save_pretrained(directory, safe_serialization=True)
    return Path(directory)


def load_lora(
    model: OcelliForConditionalGeneration,
    directory: str | Path,
    is_trainable: bool = False,
    quantize: str | None = None,
    block_size: int = 64,
) -> PeftModel:
    """Attach adapters saved by `save_lora` to a float base model (frozen unless
    is_trainable); `quantize` then stores its LM quantized, as apply_lora does."""
    _check_scheme(quantize)
    directory = Path(directory)
    missing = [name for name in ADAPTER_FILES if not (directory / name).is_file()]
    if missing:
        raise CheckpointError(
            f"LoRA adapter directory {directory} lacks {', '.join(missing)}; save adapters with save_lora()"
        )
    peft_model = PeftModel.from_pretrained(model, directory, is_trainable=is_trainable)
    if quantize is not None:
        quantize_language_model(peft_model, quantize, block_size)
    return peft_model


def merge_lora(model: PeftModel) -> OcelliForConditionalGeneration:
    """Fold the adapters into the base weights and return the plain ocelli model."""
    if not isinstance(model, PeftModel):
        raise ConfigError("merge_lora needs the model returned by apply_lora or load_lora")
    # PEFT adds the adapters' product to base_layer.weight, which a quantized layer stores
    # as codes: give it the float weight first
    dequantize_language_model(model)
    return model.merge_and_unload()


def _check_scheme(quantize: str | None) -> None:
    if quantize is not None and quantize not in SCHEMES:
        raise ConfigError(
            f"quantize={quantize!r} is not a scheme ocelli knows; use one of {', '.join(SCHEMES)} "
            "or None"
        )
