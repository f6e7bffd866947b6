"""Export to Hugging Face `LlavaForConditionalGeneration`, the layout vLLM and other
serving stacks load.

Supported: connector "mlp" (the LLaVA-1.5 projector) with a CLIP or SigLIP encoder and a
Llama or Qwen2 language model. The weights are renamed, not converted:

    vision_tower.model.*   -> vision_tower.*            (transformers 5 layout)
                           or vision_tower.vision_model.*  (legacy_vision_keys=True,
                              what transformers 4 wrote; transformers 5 loads both)
    connector.*            -> multi_modal_projector.*
    language_model.*       -> language_model.*  (model.* and lm_head.*, as Llava saves)

`vision_feature_layer` carries over; `keep_cls` becomes vision_feature_select_strategy
("default" drops CLIP's CLS token, "full" keeps it; SigLIP has none, so "full").
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors.torch import save_file
from transformers import AutoTokenizer, LlavaConfig

from ocelli.errors import ConfigError
from ocelli.model.configuration import OcelliConfig
from ocelli.model.encoders import CLIPEncoder, SiglipEncoder
from ocelli.model.modeling import OcelliForConditionalGeneration
from ocelli.utils.io import atomic_dir, atomic_write_json

SUPPORTED_CONNECTORS = ("mlp",)
SUPPORTED_VISION = {"clip_vision_model": CLIPEncoder, "siglip_vision_model": SiglipEncoder}
SUPPORTED_TEXT = ("llama", "qwen2")
# Files of an ocelli processor directory that describe ocelli's own processor; the
# exported directory gets Llava's equivalents instead.
OCELLI_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
PIL_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


def export_llava_hf(
    model_dir_or_model: str | Path | OcelliForConditionalGeneration,
    out_dir: str | Path,
    processor_dir: str | Path | None = None,
    legacy_vision_keys: bool = False,
    max_shard_size: str = "5GB",
) -> Path:
    """Write `out_dir` so that `LlavaForConditionalGeneration.from_pretrained(out_dir)`
    gives the same logits as the ocelli model; with `processor_dir` (an OcelliProcessor
    directory) the tokenizer files are copied so `AutoProcessor` loads a LlavaProcessor."""
    model = model_dir_or_model
    if isinstance(model, (str, os.PathLike)):
        model = OcelliForConditionalGeneration.from_pretrained(model)
    elif not isinstance(model, OcelliForConditionalGeneration):
        raise ConfigError(
            f"export_llava_hf takes an ocelli model or its directory, got {type(model).__name__}; "
            "fold LoRA adapters in first with merge_lora(model)"
        )
    check_exportable(model.config)
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    with atomic_dir(out_dir) as staging:  # a failed export leaves no half-written directory
        image_token = "<image>"
        if processor_dir is not None:
            image_token = _copy_tokenizer_files(Path(processor_dir), staging, model.config)
        llava_config(model).save_pretrained(staging)
        model.generation_config.save_pretrained(staging)
        _save_weights(llava_state_dict(model, legacy_vision_keys), staging, max_shard_size)
        write_processor_configs(model.config, staging, image_token, processor_dir)
    return out_dir


def _check_replaceable(out_dir: Path) -> None:
    """Only an empty directory or an earlier export may be replaced."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir() or (any(out_dir.iterdir()) and not _is_llava_dir(out_dir)):
        raise ConfigError(
            f"export directory {out_dir} exists and holds something other than an earlier "
            "Llava export; give a new or empty directory"
        )


def _is_llava_dir(directory: Path) -> bool:
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("model_type") == "llava"


def check_exportable(config: OcelliConfig) -> None:
    if getattr(config, "anyres", None):
        raise ConfigError(
            "export_llava_hf writes a plain Llava model, which has no AnyRes tiling; this model "
            "has anyres set, so its image tokens would not match (LLaVA-NeXT export is not written)"
        )
    vision_type = config.vision_config.model_type if config.vision_config is not None else None
    if (
        config.connector not in SUPPORTED_CONNECTORS
        or vision_type not in SUPPORTED_VISION
        or config.text_config.model_type not in SUPPORTED_TEXT
    ):
        raise ConfigError(
            f"export_llava_hf supports connector {'/'.join(SUPPORTED_CONNECTORS)} with vision encoder "
            f"{'/'.join(SUPPORTED_VISION)} and language model {'/'.join(SUPPORTED_TEXT)}; this model "
            f"has connector {config.connector!r}, vision encoder {vision_type!r} and language model "
            f"{config.text_config.model_type!r}"
        )


def select_strategy(config: OcelliConfig) -> str:
    return (
        "full"
        if config.keep_cls or not SUPPORTED_VISION[config.vision_config.model_type].has_cls
        else "default"
    )


def llava_config(model: OcelliForConditionalGeneration) -> LlavaConfig:
    config = model.config
    text_config = config.text_config.__class__.from_dict(config.text_config.to_dict())
    text_config.architectures = [type(model.language_model).__name__]  # vLLM reads it
    llava = LlavaConfig(
        vision_config=config.vision_config.to_dict(),
        text_config=text_config,
        image_token_index=config.image_token_id,
        image_seq_length=config.num_image_tokens,
        projector_hidden_act=config.connector_config["hidden_act"],
        multimodal_projector_bias=config.connector_config["bias"],
        vision_feature_select_strategy=select_strategy(config),
        vision_feature_layer=config.vision_feature_layer,
        tie_word_embeddings=config.tie_word_embeddings,
    )
    llava.architectures = ["LlavaForConditionalGeneration"]
    llava.pad_token_id = config.pad_token_id
    return llava


def llava_state_dict(
    model: OcelliForConditionalGeneration, legacy_vision_keys: bool = False
) -> dict[str, torch.Tensor]:
    """Our weights under the names transformers 5 saves for Llava."""
    vision_prefix = "vision_tower.vision_model." if legacy_vision_keys else "vision_tower."
    renames = {
        "vision_tower.model.": vision_prefix,
        "connector.": "multi_modal_projector.",
        "language_model.": "language_model.",
    }
    state = {}
    for key, tensor in model.state_dict().items():
        prefix = next(p for p in renames if key.startswith(p))
        state[renames[prefix] + key[len(prefix) :]] = tensor.detach().contiguous()
    if model.config.tie_word_embeddings:
        state.pop("language_model.lm_head.weight", None)  # tied to the input embeddings
    _fold_standardization(state, "multi_modal_projector.")
    return state


def _fold_standardization(state: dict[str, torch.Tensor], prefix: str) -> None:
    """Llava's projector has no input standardisation: fold ours into its first layer,
    W (x - mean) / std + b = (W / std) x + (b - (W / std) mean), exactly."""
    mean = state.pop(prefix + "feature_mean").double()
    std = state.pop(prefix + "feature_std").double()
    weight = state[prefix + "linear_1.weight"]
    folded = weight.double() / std
    shift = folded @ mean
    bias_key = prefix + "linear_1.bias"
    if bias_key not in state:
        if bool(shift.abs().max() > 0):
            raise ConfigError(
                "this model's connector has no bias, so its calibrated input mean cannot be "
                "folded into Llava's projector; train with connector_config.bias=true to export"
            )
    else:
        state[bias_key] = (state[bias_key].double() - shift).to(weight.dtype).contiguous()
    state[prefix + "linear_1.weight"] = folded.to(weight.dtype).contiguous()


def _save_weights(state: dict[str, torch.Tensor], out_dir: Path, max_shard_size: str) -> None:
    split = split_torch_state_dict_into_shards(
        state, filename_pattern="model{suffix}.safetensors", max_shard_size=max_shard_size
    )
    for filename, keys in split.filename_to_tensors.items():
        save_file({key: state[key] for key in keys}, out_dir / filename, metadata={"format": "pt"})
    if split.is_sharded:
        atomic_write_json(
            out_dir / "model.safetensors.index.json",
            {"metadata": split.metadata, "weight_map": split.tensor_to_filename},
        )


def _copy_tokenizer_files(processor_dir: Path, out_dir: Path, config: OcelliConfig) -> str:
    """Copy the tokenizer files and return the text of the image token, after checking
    that the tokenizer encodes that text to exactly the model's image_token_id (what
    LlavaProcessor relies on)."""
    if not processor_dir.is_dir():
        raise ConfigError(f"processor_dir {processor_dir} is not a directory")
    tokenizer = AutoTokenizer.from_pretrained(
        processor_dir, trust_remote_code=False, local_files_only=True
    )
    image_token = tokenizer.convert_ids_to_tokens(config.image_token_id)
    encoded = tokenizer.encode(image_token, add_special_tokens=False) if image_token else []
    if encoded != [config.image_token_id]:
        raise ConfigError(
            f"the tokenizer in {processor_dir} does not encode the model's image token "
            f"(id {config.image_token_id}, text {image_token!r}) as that one id; export with "
            "the processor the model was trained with"
        )
    if len(tokenizer) > config.text_config.vocab_size:
        raise ConfigError(
            f"the tokenizer in {processor_dir} has {len(tokenizer)} tokens but the model's "
            f"vocabulary has {config.text_config.vocab_size}; export with the processor the "
            "model was trained with"
        )
    for path in processor_dir.iterdir():
        if (
            path.is_file()
            and path.name not in OCELLI_PROCESSOR_FILES
            and not path.name.startswith("ocelli")
        ):
            shutil.copy2(path, out_dir / path.name)
    return image_token


def write_processor_configs(
    config: OcelliConfig, out_dir: Path, image_token: str, processor_dir: str | Path | None = None
) -> None:
    """preprocessor_config.json (a CLIP image processor) and processor_config.json (a
    LlavaProcessor), so the exported directory expands <image> to the right count."""
    encoder = SUPPORTED_VISION[config.vision_config.model_type]
    image_processor = clip_image_processor_config(config, encoder, processor_dir)
    atomic_write_json(out_dir / "preprocessor_config.json", image_processor)
    atomic_write_json(
        out_dir / "processor_config.json",
        {
            "processor_class": "LlavaProcessor",
            "image_processor": image_processor,
            "image_token": image_token,
            "patch_size": config.vision_config.patch_size,
            "vision_feature_select_strategy": select_strategy(config),
            "num_additional_image_tokens": int(encoder.has_cls),
        },
    )


def clip_image_processor_config(
    config: OcelliConfig, encoder: Any, processor_dir: str | Path | None
) -> dict[str, Any]:
    """Resize to the encoder's square input (no crop), rescale, normalise: the steps
    ocelli's image processor takes. Mean/std/resample come from the processor directory
    when it has them (what the model was trained with), else the encoder's defaults."""
    size = config.vision_config.image_size
    saved = _read_image_processor(processor_dir)
    mean = saved.get("mean", saved.get("image_mean", encoder.image_mean))
    std = saved.get("std", saved.get("image_std", encoder.image_std))
    resample = saved.get("resample", "bicubic")
    return {
        "image_processor_type": "CLIPImageProcessor",
        "do_convert_rgb": True,
        "do_resize": True,
        "size": {"height": size, "width": size},
        "resample": PIL_RESAMPLE.get(resample, resample) if isinstance(resample, str) else resample,
        "do_center_crop": False,
        "crop_size": {"height": size, "width": size},
        "do_rescale": bool(saved.get("rescale", saved.get("do_rescale", True))),
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(mean),
        "image_std": list(std),
    }


def _read_image_processor(processor_dir: str | Path | None) -> dict[str, Any]:
    if processor_dir is None:
        return {}
    path = Path(processor_dir) / "preprocessor_config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}); re-save the processor") from None
    return data if isinstance(data, dict) else {}
