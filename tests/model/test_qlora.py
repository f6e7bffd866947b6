"""QLoRA-style LoRA: the frozen LM stored quantized (nf4, int8), float32 adapters on top."""

import pytest
import torch
from torch import nn

from ocelli.errors import ConfigError
from ocelli.model import (
    OcelliForConditionalGeneration,
    QuantizedLinear,
    apply_lora,
    load_lora,
    merge_lora,
    save_lora,
)
from ocelli.model.qlora import NF4_LEVELS, frozen_bytes, quantize_blockwise

from .tiny import IMAGE_TOKEN_ID, images, make_model, prompt


def batch(model):
    ids = torch.tensor([prompt(model, [1, 8, 9], suffix=[10, 11, 12, 13])] * 2)
    return {
        "input_ids": ids,
        "pixel_values": images(2),
        "labels": ids.masked_fill(ids == IMAGE_TOKEN_ID, -100),
    }


def losses_while_training(model, inputs, steps=4):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def lora(quantize=None, seed=0):
    model = make_model("siglip-tiny", "qwen2-tiny", seed=seed)
    torch.manual_seed(1)  # the same adapter initialisation for every scheme
    return model, apply_lora(model, r=4, alpha=8, dropout=0.0, quantize=quantize)


def test_normal_float_levels():
    assert len(NF4_LEVELS) == 16 and torch.equal(NF4_LEVELS, NF4_LEVELS.sort().values)
    assert NF4_LEVELS[0] == -1 and NF4_LEVELS[-1] == 1 and (NF4_LEVELS == 0).sum() == 1
    assert (NF4_LEVELS > 0).sum() == 8


@pytest.mark.parametrize(("scheme", "bound"), [("nf4", 0.12), ("int8", 0.01)])
def test_blockwise_error_is_small_and_zero_stays_zero(scheme, bound):
    weight = torch.randn(96, 64, generator=torch.Generator().manual_seed(0))
    weight[0, :5] = 0
    layer = QuantizedLinear(nn.Linear(64, 96).requires_grad_(False), scheme)
    with torch.no_grad():
        layer = QuantizedLinear(_linear_with(weight), scheme)
    restored = layer.dequantized_weight()
    assert (restored[0, :5] == 0).all()
    assert ((restored - weight).norm() / weight.norm()).item() < bound
    codes, _ = quantize_blockwise(weight, scheme, 64)
    assert codes.numel() == weight.numel() // (2 if scheme == "nf4" else 1)


def _linear_with(weight):
    linear = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        linear.weight.copy_(weight)
    return linear


def test_only_the_language_model_is_quantized_and_only_adapters_train():
    model, peft_model = lora("nf4")
    vision = {k: v.clone() for k, v in model.vision_tower.state_dict().items()}
    language_model = model.language_model
    quantized = [m for m in language_model.modules() if isinstance(m, QuantizedLinear)]
    plain = [
        m for n, m in language_model.named_modules() if type(m) is nn.Linear and "lora_" not in n
    ]
    assert quantized and plain == [language_model.get_output_embeddings()]
    assert not any(isinstance(m, QuantizedLinear) for m in model.vision_tower.modules())
    assert not any(isinstance(m, QuantizedLinear) for m in model.connector.modules())
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    losses_while_training(peft_model, batch(model), steps=2)
    assert all(torch.equal(v, model.vision_tower.state_dict()[k]) for k, v in vision.items())


# Relative loss gaps to float32 LoRA on these tiny random models (hidden 32, weights of
# std 0.2): before any step (quantization error alone) and at any step of training.
GAPS = {"nf4": (0.03, 0.10), "int8": (0.003, 0.01)}


@pytest.mark.parametrize("scheme", list(GAPS))
def test_loss_stays_close_to_float_lora(scheme):
    float_model, float_lora = lora(None)
    quantized_model, quantized_lora = lora(scheme)
    inputs = batch(float_model)
    reference = losses_while_training(float_lora, inputs)
    measured = losses_while_training(quantized_lora, inputs)
    first_step, any_step = GAPS[scheme]
    assert abs(measured[0] - reference[0]) / reference[0] < first_step, (reference, measured)
    for expected, got in zip(reference, measured, strict=True):
        assert abs(got - expected) / expected < any_step, (reference, measured)
    # the adapters learn about as much on the quantized base as on the float one
    assert measured[0] - measured[-1] > 0.85 * (reference[0] - reference[-1])


def test_adapters_save_load_and_merge(tmp_path):
    model, peft_model = lora("nf4")
    inputs = batch(model)
    losses_while_training(peft_model, inputs, steps=3)
    peft_model.eval()
    with torch.no_grad():
        tuned = peft_model(**inputs).logits
    save_lora(peft_model, tmp_path)
    saved = {path.name for path in tmp_path.iterdir()}
    assert saved == {"adapter_config.json", "adapter_model.safetensors", "README.md"} or (
        {"adapter_config.json", "adapter_model.safetensors"} <= saved
    )
    assert (tmp_path / "adapter_model.safetensors").stat().st_size < 200_000

    loaded = load_lora(make_model("siglip-tiny", "qwen2-tiny"), tmp_path, quantize="nf4")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, tuned)
        merged = merge_lora(loaded)
        assert isinstance(merged, OcelliForConditionalGeneration)
        assert not any(isinstance(m, QuantizedLinear) for m in merged.modules())
        torch.testing.assert_close(merged(**inputs).logits, tuned, atol=1e-4, rtol=1e-4)


def test_frozen_language_model_takes_less_memory():
    """Figures for the docs: the LM's frozen bytes in float32, int8 and nf4."""
    sizes = {}
    for scheme in (None, "int8", "nf4"):
        model, peft_model = lora(scheme)
        sizes[scheme] = frozen_bytes(model.language_model)
    linear_share = 1 - sizes["nf4"] / sizes[None]
    assert sizes["nf4"] < sizes["int8"] < sizes[None]
    assert linear_share > 0.3, sizes


def test_unknown_scheme_is_a_config_error():
    with pytest.raises(ConfigError, match="nf4"):
        apply_lora(make_model(), quantize="fp4")
