"""xattn and adapter: the image enters the LM through hooks on its layers, behind gates
that start at zero."""

import pytest
import torch

from ocelli.errors import ConfigError
from ocelli.model import OcelliConfig, language_model_preset, vision_preset

from .tiny import (
    IMAGE_TOKEN_ID,
    LANGUAGE_MODELS,
    PAD_TOKEN_ID,
    VISION,
    logits_of_the_lm_alone,
    make_model,
    prompt,
    two_prompts,
)

FEATURE_LEVEL = ["xattn", "adapter"]
LMS = ["llama-tiny", "qwen2-tiny"]


def open_gates(model, value=0.7):
    for name, parameter in model.connector.named_parameters():
        if "gate" in name:
            parameter.data.fill_(value)


@pytest.mark.parametrize("language_model", LMS)
@pytest.mark.parametrize("connector", FEATURE_LEVEL)
def test_at_initialisation_the_lm_computes_exactly_what_it_does_alone(connector, language_model):
    model = make_model("clip-tiny", language_model, connector)
    ids, mask, pixel_values = two_prompts(model)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, pixel_values=pixel_values)
    alone = logits_of_the_lm_alone(model, ids, mask, out.image_hidden_states)
    assert torch.equal(out.logits, alone)
    open_gates(model)
    with torch.no_grad():
        gated = model(input_ids=ids, attention_mask=mask, pixel_values=pixel_values).logits
    assert not torch.allclose(gated, alone)


@pytest.mark.parametrize("connector", FEATURE_LEVEL)
def test_zero_gates_still_get_gradients(connector):
    model = make_model("siglip-tiny", "qwen2-tiny", connector).train()
    ids, mask, pixel_values = two_prompts(model)
    labels = ids.masked_fill((ids == IMAGE_TOKEN_ID) | (mask == 0), -100)
    model(
        input_ids=ids, attention_mask=mask, pixel_values=pixel_values, labels=labels
    ).loss.backward()
    gates = [p for name, p in model.connector.named_parameters() if "gate" in name]
    assert gates and all(gate.grad is not None for gate in gates)
    assert any(gate.grad.abs().sum() > 0 for gate in gates)


@pytest.mark.parametrize("connector", FEATURE_LEVEL)
def test_each_row_sees_its_own_images_in_batched_generation(connector):
    model = make_model("clip-tiny", "llama-tiny", connector)
    open_gates(model)
    ids, mask, pixel_values = two_prompts(model)
    options = {"max_new_tokens": 4, "do_sample": False, "pad_token_id": PAD_TOKEN_ID}
    with torch.no_grad():
        batched = model.generate(
            input_ids=ids, attention_mask=mask, pixel_values=pixel_values, **options
        )[:, ids.shape[1] :]
        first = model.generate(
            input_ids=torch.tensor([prompt(model, [1, 8, 9])]),
            pixel_values=pixel_values[:1],
            **options,
        )[:, -4:]
        second = model.generate(
            input_ids=torch.tensor([prompt(model, [1], num_images=2)]),
            pixel_values=pixel_values[1:],
            **options,
        )[:, -4:]
    assert torch.equal(batched, torch.cat([first, second]))


@pytest.mark.parametrize("connector", FEATURE_LEVEL)
def test_a_text_only_prompt_does_not_see_the_previous_images(connector):
    model = make_model("clip-tiny", "llama-tiny", connector)
    open_gates(model)
    text = torch.tensor([[1, 8, 9, 10]])
    with torch.no_grad():
        before = model(input_ids=text).logits
        ids, mask, pixel_values = two_prompts(model)
        model(input_ids=ids, attention_mask=mask, pixel_values=pixel_values)
        assert torch.equal(model(input_ids=text).logits, before)


def test_xattn_blocks_go_before_every_nth_layer():
    model = make_model("clip-tiny", "llama-tiny", "xattn", connector_config={"every": 2})
    assert len(model.connector.blocks) == 1  # the tiny LM has 2 layers
    hooked = [bool(layer._forward_pre_hooks) for layer in model.language_model.model.layers]
    assert hooked == [True, False]


def config(connector, options=None, **text):
    text_config = text or language_model_preset("llama-tiny", **LANGUAGE_MODELS["llama-tiny"])
    return OcelliConfig(
        vision_config=vision_preset("clip-tiny", **VISION["clip-tiny"]),
        text_config=text_config,
        connector=connector,
        connector_config=options,
        image_token_id=IMAGE_TOKEN_ID,
    )


@pytest.mark.parametrize("connector", FEATURE_LEVEL)
def test_an_lm_without_hookable_layers_fails_when_the_config_is_built(connector):
    with pytest.raises(ConfigError, match="hooks into .* got 'gpt2'.* token-level connector"):
        config(connector, model_type="gpt2", n_embd=64, n_layer=2, n_head=2, vocab_size=96)


def test_adapter_refuses_more_layers_than_the_lm_has():
    with pytest.raises(ConfigError, match="num_adapted_layers 3 is more than .* 2 layers"):
        config("adapter", {"num_adapted_layers": 3})


@pytest.mark.parametrize("connector", [*FEATURE_LEVEL, "visual-expert"])
def test_lora_trains_beside_a_hooked_connector_but_cannot_copy_it(connector):
    from ocelli.model import apply_lora

    model = make_model("clip-tiny", "llama-tiny", connector).train()
    ids, mask, pixel_values = two_prompts(model)
    labels = ids.masked_fill((ids == IMAGE_TOKEN_ID) | (mask == 0), -100)
    copied = apply_lora(
        make_model("clip-tiny", "llama-tiny", connector),
        r=2,
        alpha=4,
        target_modules=["q_proj"],
        modules_to_save=["connector"],
    )
    with pytest.raises(ConfigError, match="cannot be wrapped .* leave it out of modules_to_save"):
        copied(input_ids=ids, pixel_values=pixel_values, attention_mask=mask)
    peft_model = apply_lora(model, r=2, alpha=4, target_modules=["q_proj"])
    peft_model.connector.requires_grad_(True)
    out = peft_model(input_ids=ids, attention_mask=mask, pixel_values=pixel_values, labels=labels)
    out.loss.backward()
    trained = [p for p in model.connector.parameters() if p.grad is not None]
    assert trained and any(p.grad.abs().sum() > 0 for p in trained)


@pytest.mark.parametrize("connector", FEATURE_LEVEL)
def test_a_batch_other_than_the_bound_one_is_refused(connector):
    """What continuous batching would do: decode rows whose images were never bound."""
    import copy

    model = make_model("clip-tiny", "llama-tiny", connector)
    ids, mask, pixel_values = two_prompts(model)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, pixel_values=pixel_values, use_cache=True)
        step = {"input_ids": ids[:, -1:], "use_cache": True}
        model(past_key_values=out.past_key_values, **step)  # the bound batch goes on
        with pytest.raises(ConfigError, match="another batch .* cannot follow rows that join"):
            model(past_key_values=copy.deepcopy(out.past_key_values), **step)


@pytest.mark.parametrize("connector", FEATURE_LEVEL)
def test_beam_search_keeps_each_sample_with_its_images(connector):
    model = make_model("clip-tiny", "llama-tiny", connector)
    open_gates(model)
    ids, mask, pixel_values = two_prompts(model)
    options = {
        "max_new_tokens": 3,
        "num_beams": 2,
        "do_sample": False,
        "pad_token_id": PAD_TOKEN_ID,
    }
    with torch.no_grad():
        batched = model.generate(
            input_ids=ids, attention_mask=mask, pixel_values=pixel_values, **options
        )
        first = model.generate(
            input_ids=ids[:1, mask[0].argmax() :], pixel_values=pixel_values[:1], **options
        )
    assert torch.equal(batched[0, -3:], first[0, -3:])
