import pytest
import torch

from ocelli.errors import CheckpointError, ConfigError
from ocelli.model import apply_lora, load_lora, merge_lora, save_lora

from .tiny import IMAGE_TOKEN_ID, images, make_model, prompt


def batch(model):
    ids = torch.tensor([prompt(model, [1, 8, 9], suffix=[10, 11, 12])] * 2)
    return {
        "input_ids": ids,
        "pixel_values": images(2),
        "labels": ids.masked_fill(ids == IMAGE_TOKEN_ID, -100),
    }


def train_steps(model, inputs, steps=3):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        model(**inputs).loss.backward()
        optimizer.step()


def test_lora_trains_only_language_model_adapters(tmp_path):
    model = make_model("siglip-tiny", "qwen2-tiny")
    vision_before = {k: v.clone() for k, v in model.vision_tower.state_dict().items()}
    connector_before = {k: v.clone() for k, v in model.connector.state_dict().items()}
    peft_model = apply_lora(model, r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    trainable = [name for name, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all(".language_model." in name and "lora_" in name for name in trainable)
    assert not any("lora_" in name for name, _ in model.vision_tower.named_parameters())
    inputs = batch(model)
    train_steps(peft_model, inputs)
    assert all(torch.equal(v, model.vision_tower.state_dict()[k]) for k, v in vision_before.items())
    assert all(torch.equal(v, model.connector.state_dict()[k]) for k, v in connector_before.items())
    assert any(p.abs().sum() > 0 for name, p in peft_model.named_parameters() if "lora_B" in name)

    with torch.no_grad():
        tuned = peft_model(**inputs).logits
    save_lora(peft_model, tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file()
    loaded = load_lora(make_model("siglip-tiny", "qwen2-tiny"), tmp_path)
    assert not any(p.requires_grad for p in loaded.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, tuned)
        merged = merge_lora(loaded)
        assert not any("lora_" in name for name, _ in merged.named_parameters())
        torch.testing.assert_close(merged(**inputs).logits, tuned, atol=1e-5, rtol=1e-5)


def test_connector_can_train_beside_the_adapters():
    model = make_model()
    peft_model = apply_lora(model, r=2, target_modules=["q_proj"], modules_to_save=["connector"])
    trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad}
    assert any("connector" in name for name in trainable)
    assert not any("vision_tower" in name for name in trainable)


def test_lora_errors_are_actionable(tmp_path):
    with pytest.raises(ConfigError, match="target_modules is empty"):
        apply_lora(make_model(), target_modules=[])
    with pytest.raises(ConfigError, match="apply_lora"):
        apply_lora(make_model(), target_modules=["no_such_layer"])
    with pytest.raises(CheckpointError, match="adapter_config.json"):
        load_lora(make_model(), tmp_path)
