import pytest
import torch
from torch import nn

from ocelli.errors import ConfigError
from ocelli.model import OcelliForConditionalGeneration
from ocelli.model.quantize import quantize_for_cpu

from .tiny import IMAGE_TOKEN_ID, LANGUAGE_MODELS, PAD_TOKEN_ID, VISION, images, left_pad, prompt


def realistic_model(connector="mlp"):
    """The tiny model with the usual initializer range (0.02): tiny.py's 0.2 makes
    logits unrealistically spread and activations unrealistically large."""
    torch.manual_seed(0)
    return OcelliForConditionalGeneration.from_components(
        "siglip-tiny",
        "llama-tiny",
        connector,
        image_token_id=IMAGE_TOKEN_ID,
        vision_overrides=VISION["siglip-tiny"],
        language_model_overrides={**LANGUAGE_MODELS["llama-tiny"], "initializer_range": 0.02},
    ).eval()


def inputs(model):
    ids, mask = left_pad([prompt(model, [1, 8, 9, 10]), prompt(model, [1], num_images=2)])
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": images(3)}


def test_int8_logits_stay_close_and_the_float_model_is_untouched():
    model = realistic_model()
    quantized = quantize_for_cpu(model)
    batch = inputs(model)
    with torch.no_grad():
        expected = model(**batch).logits
        actual = quantized(**batch).logits
    assert type(model.language_model.lm_head) is nn.Linear  # a copy was quantized
    assert type(quantized.language_model.lm_head) is not nn.Linear
    scale = expected.abs().max()
    assert (actual - expected).abs().max() < 0.05 * scale
    agreement = (actual.argmax(-1) == expected.argmax(-1)).float().mean()
    assert agreement >= 0.9
    with torch.no_grad():
        generated = quantized.generate(
            **batch, max_new_tokens=3, do_sample=False, pad_token_id=PAD_TOKEN_ID
        )
    assert generated.shape[0] == 2


def test_feature_level_connectors_survive_quantization():
    model = realistic_model("xattn")
    for name, parameter in model.connector.named_parameters():
        if "gate" in name:
            parameter.data.fill_(0.5)
    batch = inputs(model)
    with torch.no_grad():
        model(**batch)  # leaves an image context behind; the copy must not carry it
        quantized = quantize_for_cpu(model, vision=True)
        assert torch.isfinite(quantized(**batch).logits).all()
    assert type(quantized.vision_tower.model.encoder.layers[0].mlp.fc1) is not nn.Linear


def test_only_float32_cpu_models_are_quantized():
    model = realistic_model().to(torch.bfloat16)
    with pytest.raises(ConfigError, match="needs a float32 model on the CPU.*model.float"):
        quantize_for_cpu(model)
