"""The LM's last layer computed only where the head reads it: the same loss and gradients
in packed training, and no change anywhere it is not exact."""

import pytest
import torch

from ocelli.data import IGNORE_INDEX, PadCollator
from ocelli.data.packing import PackCollator
from ocelli.model import last_layer
from tests.data.test_packing import loss_and_grads, samples
from tests.model.tiny import PAD_TOKEN_ID, make_model


@pytest.fixture
def stand_in_calls(monkeypatch) -> list[int]:
    """Counts the calls of the last layer's stand-in."""
    calls = []
    compute = last_layer.decoder_layer_at
    monkeypatch.setattr(
        last_layer,
        "decoder_layer_at",
        lambda *args, **kwargs: calls.append(1) or compute(*args, **kwargs),
    )
    return calls


def packed_batch(model) -> dict:
    # rows of 64 tokens: several samples per row, and padding segments with nothing to read
    return PackCollator(PAD_TOKEN_ID, max_tokens=64)(samples(model))


@pytest.mark.parametrize("language_model", ["llama-tiny", "qwen2-tiny"])
def test_last_layer_at_read_positions_keeps_loss_and_gradients(
    language_model, stand_in_calls, monkeypatch
):
    model = make_model(language_model=language_model)
    batch = packed_batch(model)
    assert (batch["labels"] == IGNORE_INDEX).float().mean() > 0.5  # most positions unread
    layers = model.language_model.model.layers
    last = layers[-1]
    at_read_positions = loss_and_grads(model, batch)
    assert stand_in_calls == [1]
    assert layers[-1] is last  # put back
    monkeypatch.setattr(
        last_layer, "computes_last_layer_at_positions", lambda language_model, lm_kwargs: False
    )
    whole = loss_and_grads(model, batch)
    assert stand_in_calls == [1]
    torch.testing.assert_close(at_read_positions[0], whole[0], atol=1e-6, rtol=0)
    assert len(at_read_positions[1]) == len(whole[1])
    # float32 summation order only: within 1e-5 of each gradient's largest value
    for fast, reference in zip(at_read_positions[1], whole[1], strict=True):
        torch.testing.assert_close(
            fast, reference, atol=1e-7 + 1e-5 * reference.abs().max(), rtol=0
        )


def test_mixture_of_experts_keeps_every_layer_whole(stand_in_calls):
    """Its router loss counts every token of every layer."""
    model = make_model(language_model="qwen2-moe-tiny")
    loss, _ = loss_and_grads(model, packed_batch(model))
    assert torch.isfinite(loss)
    assert stand_in_calls == []


def test_whole_layer_without_labels_padding_or_per_sample_attention(stand_in_calls):
    model = make_model()
    batch = packed_batch(model)
    with torch.no_grad():
        model(**{k: v for k, v in batch.items() if k != "labels"})  # no labels: all logits
        model(**PadCollator(PAD_TOKEN_ID)(samples(model)))  # padded: attention mask
        model.language_model.config._attn_implementation = "eager"  # the dense mask
        model(**batch)
    assert stand_in_calls == []


def test_whole_layer_for_hooks_or_hidden_states(stand_in_calls):
    """A hook on the layer sees every position; so do the hidden states asked for."""
    model = make_model()
    batch = packed_batch(model)
    every_position = (*batch["input_ids"].shape, model.config.text_config.hidden_size)
    seen = []
    mlp = model.language_model.model.layers[-1].mlp
    hook = mlp.register_forward_hook(lambda module, args, output: seen.append(output.shape))
    with torch.no_grad():
        model(**batch)
        hook.remove()
        outputs = model(**batch, output_hidden_states=True)
    assert seen == [every_position]
    assert outputs.hidden_states[-1].shape == every_position
    assert stand_in_calls == []
