"""`ocelli export --format llava-hf` checked against what vLLM's Llava loader expects.

No vLLM here (it needs a GPU): the test reproduces the parts of its loader that an
export can get wrong. From vllm/model_executor/models/llava.py and clip.py:
- the model class comes from config.json `architectures`, the language model's from
  `text_config.architectures`;
- weights are renamed by `LlavaForConditionalGeneration.hf_to_vllm_mapper` (VLLM_PREFIXES
  below) and must then land on its modules: `vision_tower.vision_model.*` (its CLIP and
  SigLIP towers wrap a `vision_model`), `multi_modal_projector.linear_1/2`,
  `language_model.model.*` and `language_model.lm_head.*`;
- each `<image>` (image_token_index) is expanded to the vision tower's patch count
  (+1 for CLIP's CLS token), minus one under vision_feature_select_strategy "default";
- prompts go through the exported `LlavaProcessor` and its chat template."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from ocelli.cli import main
from ocelli.data.chat_template import render_chat
from ocelli.data.processing import OcelliProcessor

pytestmark = pytest.mark.slow

VLLM_PREFIXES = {
    "model.language_model.": "language_model.model.",
    "model.vision_tower.": "vision_tower.",
    "model.multi_modal_projector.": "multi_modal_projector.",
    "lm_head.": "language_model.lm_head.",
}
VLLM_MODULES = (
    "vision_tower.vision_model.",
    "multi_modal_projector.linear_1.",
    "multi_modal_projector.linear_2.",
    "language_model.model.",
    "language_model.lm_head.",
)


def vllm_name(key: str) -> str:
    for old, new in VLLM_PREFIXES.items():
        if key.startswith(old):
            return new + key[len(old) :]
    return key


@pytest.fixture(scope="module")
def exported(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("vllm") / "llava"
    assert (
        main(["export", "--model", str(model_dir), "--format", "llava-hf", "--out", str(out)]) == 0
    )
    return out


@pytest.fixture(scope="module")
def weights(exported):
    tensors = {}
    for path in sorted(exported.glob("*.safetensors")):
        with safe_open(path, "pt") as file:
            tensors.update({vllm_name(key): file.get_tensor(key) for key in file.keys()})
    return tensors


def test_config_names_the_classes_and_image_token_vllm_uses(exported, model_dir):
    config = json.loads((exported / "config.json").read_text(encoding="utf-8"))
    ocelli = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    processor = OcelliProcessor.from_pretrained(model_dir)
    assert config["architectures"] == ["LlavaForConditionalGeneration"]
    assert config["model_type"] == "llava"
    assert config["text_config"]["architectures"] == ["LlamaForCausalLM"]
    assert config["image_token_index"] == processor.image_token_id == ocelli["image_token_id"]
    assert config["projector_hidden_act"] and isinstance(config["multimodal_projector_bias"], bool)

    vision = config["vision_config"]
    assert vision["model_type"] == "clip_vision_model"
    num_layers = vision["num_hidden_layers"]
    assert -num_layers <= config["vision_feature_layer"] < num_layers
    strategy = config["vision_feature_select_strategy"]
    assert strategy in ("default", "full")
    # What vLLM expands each <image> to must be what the projector outputs per image.
    patches = (vision["image_size"] // vision["patch_size"]) ** 2 + 1  # CLIP's CLS token
    vllm_tokens = patches - 1 if strategy == "default" else patches
    assert vllm_tokens == processor.num_image_tokens == config["image_seq_length"]


def test_every_weight_lands_on_a_vllm_module(exported, weights):
    config = json.loads((exported / "config.json").read_text(encoding="utf-8"))
    stray = sorted(name for name in weights if not name.startswith(VLLM_MODULES))
    assert not stray, f"vLLM's Llava loader has no module for {stray[:5]}"
    vision, text = config["vision_config"], config["text_config"]
    layers = {name.split(".")[4] for name in weights if ".encoder.layers." in name}
    assert len(layers) == vision["num_hidden_layers"]
    assert weights["multi_modal_projector.linear_1.weight"].shape == (
        text["hidden_size"],
        vision["hidden_size"],
    )
    assert weights["multi_modal_projector.linear_2.weight"].shape == (
        text["hidden_size"],
        text["hidden_size"],
    )
    assert {"multi_modal_projector.linear_1.bias", "multi_modal_projector.linear_2.bias"} <= set(
        weights
    )
    assert "language_model.model.embed_tokens.weight" in weights
    tied = config.get("tie_word_embeddings") or text.get("tie_word_embeddings")
    assert tied or "language_model.lm_head.weight" in weights


def test_the_exported_processor_builds_ocelli_s_inputs(exported, model_dir, image_paths):
    from transformers import AutoProcessor

    llava = AutoProcessor.from_pretrained(exported)
    ocelli = OcelliProcessor.from_pretrained(model_dir)
    assert type(llava).__name__ == "LlavaProcessor"
    assert {"preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"} <= {
        path.name for path in exported.iterdir()
    }
    assert llava.image_token == "<image>" and llava.chat_template

    # vLLM renders string-content templates with one "<image>\n" per image before the text.
    messages = [{"role": "user", "content": "<image>\n<image>\nWhich is red?"}]
    prompt = llava.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt == render_chat(messages, add_generation_prompt=True)

    images = [Image.open(path).convert("RGB") for path in image_paths[:2]]
    inputs = llava(text=prompt, images=images, return_tensors="pt")
    expected = ocelli.encode_prompt(messages, num_images=2)["input_ids"]
    assert inputs["input_ids"][0].tolist() == expected
    np.testing.assert_allclose(
        inputs["pixel_values"].numpy(), ocelli.image_processor(images).numpy(), atol=1e-5
    )
    assert torch.is_tensor(inputs["pixel_values"])
