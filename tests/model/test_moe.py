"""A mixture-of-experts LM (the qwen2-moe-tiny preset): its router's load-balancing loss
is part of the training loss, and the model generates and round-trips like any other."""

import pytest
import torch

from ocelli.model import OcelliForConditionalGeneration, language_model_preset

from .tiny import IMAGE_TOKEN_ID, PAD_TOKEN_ID, images, left_pad, make_model, prompt


@pytest.fixture(scope="module")
def model():
    return make_model("clip-tiny", "qwen2-moe-tiny", "mlp")


def batch(model):
    ids, mask = left_pad([prompt(model, [1, 8, 9]), prompt(model, [1], num_images=2, suffix=[11])])
    labels = ids.masked_fill((ids == IMAGE_TOKEN_ID) | (mask == 0), -100)
    return ids, mask, labels, images(3)


def test_the_preset_is_a_router_model_with_its_loss_on():
    config = language_model_preset("qwen2-moe-tiny")
    assert config.model_type == "qwen2_moe" and config.output_router_logits
    assert config.num_experts == 4 and config.num_experts_per_tok == 2


def test_training_loss_is_cross_entropy_plus_the_weighted_router_loss(model):
    ids, mask, labels, pixel_values = batch(model)
    out = model(input_ids=ids, attention_mask=mask, pixel_values=pixel_values, labels=labels)
    vocab = out.logits.shape[-1]
    cross_entropy = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].reshape(-1, vocab), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    coefficient = model.config.text_config.router_aux_loss_coef
    assert out.aux_loss is not None and out.aux_loss > 0
    torch.testing.assert_close(out.loss, cross_entropy + coefficient * out.aux_loss)
    out.loss.backward()
    router = model.language_model.model.layers[0].mlp.gate.weight
    assert router.grad is not None and router.grad.abs().sum() > 0
    model.zero_grad()


def test_generation_and_save_load(model, tmp_path):
    ids, mask, _, pixel_values = batch(model)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, pixel_values=pixel_values)
        assert out.aux_loss is None  # no labels: the router loss is not computed
        generated = model.generate(
            input_ids=ids,
            attention_mask=mask,
            pixel_values=pixel_values,
            max_new_tokens=3,
            do_sample=False,
            pad_token_id=PAD_TOKEN_ID,
        )
    assert torch.equal(generated[:, ids.shape[1]], out.logits[:, -1].argmax(-1))
    model.save_pretrained(tmp_path)
    loaded = OcelliForConditionalGeneration.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        reloaded = loaded(input_ids=ids, attention_mask=mask, pixel_values=pixel_values).logits
    assert torch.equal(reloaded, out.logits)


def test_feature_level_connectors_hook_into_the_experts_lm():
    model = make_model("clip-tiny", "qwen2-moe-tiny", "xattn").train()
    ids, mask, labels, pixel_values = batch(model)
    out = model(input_ids=ids, attention_mask=mask, pixel_values=pixel_values, labels=labels)
    out.loss.backward()
    assert model.connector.blocks[0].attention_gate.grad is not None
