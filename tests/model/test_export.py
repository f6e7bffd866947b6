import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoProcessor,
    LlavaConfig,
    LlavaForConditionalGeneration,
    PreTrainedTokenizerFast,
)

from ocelli.errors import ConfigError
from ocelli.model import apply_lora, export_llava_hf

from .tiny import EOS_TOKEN_ID, IMAGE_TOKEN_ID, PAD_TOKEN_ID, images, left_pad, make_model, prompt

WORDS = [
    "<pad>",
    "<unk>",
    "</s>",
    "<s>",
    "<|im_end|>",
    "<image>",
    "a",
    "red",
    "cube",
    "is",
    "there",
    "?",
]


def saved_keys(directory):
    keys = set()
    for path in directory.glob("*.safetensors"):
        with safe_open(path, "pt") as weights:
            keys |= set(weights.keys())
    return keys


def calibrate_off_centre(model):
    """Input statistics far from the identity, so the export has to fold them."""
    generator = torch.Generator().manual_seed(0)
    dim = model.connector.vision_dim
    features = torch.randn(64, dim, generator=generator) * 3 + torch.randn(dim, generator=generator)
    model.connector.calibrate(features)
    assert model.connector.feature_mean.abs().max() > 0.1


def logits_of(model, ids, mask, pixel_values):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, pixel_values=pixel_values).logits


@pytest.mark.parametrize(
    "vision, language_model, options",
    [
        ("clip-tiny", "llama-tiny", {"vision_feature_layer": -2}),
        ("siglip-tiny", "qwen2-tiny", {"vision_feature_layer": -1}),
        ("clip-tiny", "qwen2-tiny", {"vision_feature_layer": -1, "keep_cls": True}),
    ],
)
def test_exported_llava_gives_the_same_logits(tmp_path, vision, language_model, options):
    model = make_model(vision, language_model, **options)
    calibrate_off_centre(model)
    model.save_pretrained(tmp_path / "ocelli")
    out = export_llava_hf(tmp_path / "ocelli", tmp_path / "llava")
    llava, info = LlavaForConditionalGeneration.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    ids, mask = left_pad(
        [prompt(model, [1, 6, 7]), prompt(model, [8], num_images=2, suffix=[9, 10])]
    )
    torch.testing.assert_close(
        logits_of(llava.eval(), ids, mask, images(3)),
        logits_of(model, ids, mask, images(3)),
        atol=1e-4,
        rtol=0,
    )

    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlavaForConditionalGeneration"]
    assert config["text_config"]["architectures"] == [type(model.language_model).__name__]
    assert config["image_token_index"] == IMAGE_TOKEN_ID
    assert config["image_seq_length"] == model.config.num_image_tokens
    strategy = "full" if vision == "siglip-tiny" or options.get("keep_cls") else "default"
    assert config["vision_feature_select_strategy"] == strategy
    # the same key names transformers itself writes for this configuration
    LlavaForConditionalGeneration(LlavaConfig.from_pretrained(out)).save_pretrained(
        tmp_path / "reference"
    )
    assert saved_keys(out) == saved_keys(tmp_path / "reference")


def test_greedy_generation_matches_after_export(tmp_path):
    model = make_model("clip-tiny", "llama-tiny")
    llava = LlavaForConditionalGeneration.from_pretrained(export_llava_hf(model, tmp_path / "out"))
    llava.eval()
    ids, mask = left_pad([prompt(model, [1, 6, 7]), prompt(model, [8])])
    options = {
        "max_new_tokens": 5,
        "do_sample": False,
        "pad_token_id": PAD_TOKEN_ID,
        "eos_token_id": EOS_TOKEN_ID,
    }
    with torch.no_grad():
        ours = model.generate(input_ids=ids, attention_mask=mask, pixel_values=images(2), **options)
        theirs = llava.generate(
            input_ids=ids, attention_mask=mask, pixel_values=images(2), **options
        )
    assert torch.equal(ours, theirs)


def test_legacy_vision_keys_load_the_same(tmp_path):
    model = make_model("siglip-tiny", "llama-tiny", vision_feature_layer=-1)
    out = export_llava_hf(model, tmp_path / "out", legacy_vision_keys=True)
    assert any(key.startswith("vision_tower.vision_model.") for key in saved_keys(out))
    llava = LlavaForConditionalGeneration.from_pretrained(out).eval()
    ids = torch.tensor([prompt(model, [1, 6])])
    torch.testing.assert_close(
        logits_of(llava, ids, None, images(1)),
        logits_of(model, ids, None, images(1)),
        atol=1e-4,
        rtol=0,
    )


def write_processor_dir(directory):
    tokenizer = Tokenizer(
        models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="<unk>")
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="</s>",
        additional_special_tokens=["<image>", "<|im_end|>"],
    ).save_pretrained(directory)
    (directory / "ocelli_processor.json").write_text(json.dumps({"num_image_tokens": 16}))
    (directory / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "OcelliImageProcessor",
                "size": [32, 32],
                "resample": "bicubic",
                "mean": [0.1, 0.2, 0.3],
                "std": [0.5, 0.6, 0.7],
                "rescale": True,
            }
        )
    )


def test_processor_files_make_a_working_llava_processor(tmp_path):
    model = make_model("clip-tiny", "llama-tiny")
    write_processor_dir(tmp_path / "processor")
    out = export_llava_hf(model, tmp_path / "llava", processor_dir=tmp_path / "processor")
    assert not (out / "ocelli_processor.json").exists()
    processor = AutoProcessor.from_pretrained(out)
    assert type(processor).__name__ == "LlavaProcessor"
    image = Image.fromarray(np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3))
    encoded = processor(images=[image], text=["a <image> red cube"], return_tensors="pt")
    assert int((encoded["input_ids"] == IMAGE_TOKEN_ID).sum()) == model.config.num_image_tokens
    expected = (np.asarray(image, dtype=np.float32) / 255 - [0.1, 0.2, 0.3]) / [0.5, 0.6, 0.7]
    np.testing.assert_allclose(
        encoded["pixel_values"][0].numpy(), expected.transpose(2, 0, 1), atol=1e-5
    )


def test_export_refuses_to_replace_an_unrelated_directory(tmp_path):
    model = make_model()
    export_llava_hf(model, tmp_path / "out")
    export_llava_hf(model, tmp_path / "out")  # an earlier export is replaced
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="holds something other than an earlier Llava export"):
        export_llava_hf(model, tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_unsupported_combinations_name_what_is_supported(tmp_path):
    with pytest.raises(
        ConfigError,
        match="supports connector mlp with vision encoder clip_vision_model/"
        "siglip_vision_model and language model llama/qwen2.*'linear'",
    ):
        export_llava_hf(make_model(connector="linear"), tmp_path)
    with pytest.raises(ConfigError, match="merge_lora"):
        export_llava_hf(apply_lora(make_model(), r=2), tmp_path)
    with pytest.raises(ConfigError, match="'convnext'"):
        export_llava_hf(make_model("convnext-tiny", vision_feature_layer=-1), tmp_path)
