"""visual-expert (CogVLM): image tokens through copies of the LM's projections and
feed-forward, text tokens through the LM's own."""

import warnings

import pytest
import torch

from ocelli.errors import ConfigError
from ocelli.model import OcelliForConditionalGeneration

from .tiny import (
    IMAGE_TOKEN_ID,
    PAD_TOKEN_ID,
    images,
    logits_of_the_lm_alone,
    make_model,
    prompt,
    two_prompts,
)


def perturb_experts(model):
    with torch.no_grad():
        for parameter in model.connector.experts.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)


@pytest.mark.parametrize("language_model", ["llama-tiny", "qwen2-tiny"])
def test_experts_start_as_copies_so_the_lm_is_unchanged(language_model):
    model = make_model("clip-tiny", language_model, "visual-expert")
    layer = model.language_model.model.layers[1]
    assert torch.equal(model.connector.experts[1]["q_proj"].weight, layer.self_attn.q_proj.weight)
    ids, mask, pixel_values = two_prompts(model)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, pixel_values=pixel_values)
    alone = logits_of_the_lm_alone(model, ids, mask, out.image_hidden_states)
    assert torch.equal(out.logits, alone)


def test_only_image_positions_and_what_follows_them_change():
    model = make_model("clip-tiny", "llama-tiny", "visual-expert")
    ids = torch.tensor([prompt(model, [1, 8, 9, 10])])
    with torch.no_grad():
        before = model(input_ids=ids, pixel_values=images(1)).logits
        perturb_experts(model)
        after = model(input_ids=ids, pixel_values=images(1)).logits
    first_image = int((ids[0] == IMAGE_TOKEN_ID).nonzero()[0])
    assert torch.equal(after[:, :first_image], before[:, :first_image])
    assert not torch.allclose(after[:, first_image:], before[:, first_image:])


def test_generated_tokens_use_the_lm_weights_as_a_full_pass_does():
    model = make_model("clip-tiny", "llama-tiny", "visual-expert")
    perturb_experts(model)
    ids, mask, pixel_values = two_prompts(model)
    with torch.no_grad():
        generated = model.generate(
            input_ids=ids,
            attention_mask=mask,
            pixel_values=pixel_values,
            max_new_tokens=4,
            min_new_tokens=4,
            do_sample=False,
            pad_token_id=PAD_TOKEN_ID,
        )
        full = model(
            input_ids=generated,
            attention_mask=torch.cat([mask, torch.ones_like(generated[:, ids.shape[1] :])], 1),
            pixel_values=pixel_values,
        ).logits
    start = ids.shape[1]
    assert torch.equal(full[:, start - 1 : -1].argmax(-1), generated[:, start:])


def test_gradient_checkpointing_gives_the_same_gradients():
    def expert_gradient(checkpointing):
        model = make_model("clip-tiny", "llama-tiny", "visual-expert").train()
        perturb_experts(model)
        if checkpointing:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                model.gradient_checkpointing_enable()
        ids, mask, pixel_values = two_prompts(model)
        labels = ids.masked_fill((ids == IMAGE_TOKEN_ID) | (mask == 0), -100)
        model(
            input_ids=ids, attention_mask=mask, pixel_values=pixel_values, labels=labels
        ).loss.backward()
        return model.connector.experts[0]["mlp"].up_proj.weight.grad

    torch.testing.assert_close(expert_gradient(True), expert_gradient(False))


def test_mixture_of_experts_lms_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="visual-expert copies .* got 'qwen2_moe'"):
        make_model("clip-tiny", "qwen2-moe-tiny", "visual-expert")


def test_experts_copy_a_pretrained_lm_from_its_directory(tmp_path):
    source = make_model("clip-tiny", "llama-tiny", "mlp")
    source.language_model.save_pretrained(tmp_path / "lm")
    model = OcelliForConditionalGeneration.from_components(
        "clip-tiny", tmp_path / "lm", "visual-expert", image_token_id=IMAGE_TOKEN_ID
    )
    expected = source.language_model.model.layers[0].mlp.down_proj.weight
    assert torch.equal(model.connector.experts[0]["mlp"].down_proj.weight, expected)
