"""Sequence packing keeps every sample to itself: the same per-sample loss as unpacked,
no label crossing a boundary, each sample's images in its own place."""

import pytest
import torch
from transformers import AttentionInterface

from ocelli.data import IGNORE_INDEX, PadCollator
from ocelli.data.packing import PackCollator, packed_collation, plan_rows
from ocelli.errors import ConfigError
from ocelli.model import modeling
from ocelli.model.packed_attention import PACKED_SDPA, attends_per_sample, sample_boundaries
from tests.model.tiny import IMAGE_TOKEN_ID, PAD_TOKEN_ID, images, make_model, prompt


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; see tests/model/conftest.py
    yield
    torch.set_num_threads(threads)


def sample(model, text: list[int], num_images: int, answer: list[int], seed: int) -> dict:
    ids = prompt(model, text, num_images=num_images, suffix=answer)
    labels = [IGNORE_INDEX] * (len(ids) - len(answer)) + answer
    item = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels)}
    if num_images:
        item["pixel_values"] = images(num_images, seed=seed)
    return item


def samples(model) -> list[dict]:
    """Different lengths and image counts (none, one, two), so rows hold mixed samples."""
    return [
        sample(model, [1, 8, 9], 1, [11, 12, 13, 2], seed=1),
        sample(model, [1], 2, [14, 2], seed=2),
        sample(model, [1, 20, 21, 22, 23], 0, [24, 25, 2], seed=3),
        sample(model, [1, 30], 1, [31, 32, 33, 34, 35, 2], seed=4),
    ]


def per_token_losses(model, batch: dict) -> torch.Tensor:
    """Loss of each labelled token, in batch order (row-major), as the LM computes it."""
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    shifted = batch["labels"][:, 1:]
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), shifted, ignore_index=IGNORE_INDEX, reduction="none"
    )
    return losses[shifted != IGNORE_INDEX]


def test_plan_rows_first_fit_in_order_and_long_samples_alone():
    assert plan_rows([5, 4, 3, 2], max_tokens=8) == [[0, 2], [1, 3]]
    assert plan_rows([10, 2], max_tokens=8) == [[0], [1]]
    assert plan_rows([10, 2], max_tokens=None) == [[0, 1]]


@pytest.mark.parametrize("language_model", ["llama-tiny", "qwen2-tiny"])
def test_packed_loss_equals_unpacked_per_sample(language_model):
    model = make_model(language_model=language_model)
    items = samples(model)
    packed = PackCollator(PAD_TOKEN_ID, max_tokens=64)(items)
    assert len(packed["input_ids"]) < len(items)  # several samples share a row
    assert "attention_mask" not in packed  # a mask would switch off the packed path
    # Unpacked: each sample alone, so the reference has no padding either.
    unpacked = [per_token_losses(model, PadCollator(PAD_TOKEN_ID)([item])) for item in items]
    packed_losses = per_token_losses(model, packed)
    order = [i for row in plan_rows([len(it["input_ids"]) for it in items], 64) for i in row]
    expected = torch.cat([unpacked[i] for i in order])
    torch.testing.assert_close(packed_losses, expected, atol=1e-5, rtol=1e-5)
    # ...and the batch loss the trainer sees is the same mean over the same tokens
    with torch.no_grad():
        loss = model(**packed).loss
    torch.testing.assert_close(loss, torch.cat(unpacked).mean(), atol=1e-5, rtol=1e-5)


def test_without_position_resets_samples_would_leak():
    """The check above has teeth: the same rows with running positions differ."""
    model = make_model()
    packed = PackCollator(PAD_TOKEN_ID, max_tokens=64)(samples(model))
    running = torch.arange(packed["input_ids"].shape[1]).expand(len(packed["input_ids"]), -1)
    leaky = {**packed, "position_ids": running}
    isolated = per_token_losses(model, packed)
    assert not torch.allclose(isolated, per_token_losses(model, leaky))
    # transformers looks for the restarts only without a KV cache, hence use_cache=False
    cached = {**packed, "use_cache": True}
    assert not torch.allclose(isolated, per_token_losses(model, cached))


def test_labels_never_cross_a_sample_boundary():
    model = make_model()
    items = samples(model)
    packed = PackCollator(PAD_TOKEN_ID, max_tokens=64)(items)
    starts = packed["position_ids"] == 0
    # the first token of every segment (sample or padding) has no label
    assert (packed["labels"][starts] == IGNORE_INDEX).all()
    kept = sum(int((it["labels"][1:] != IGNORE_INDEX).sum()) for it in items)
    assert int((packed["labels"] != IGNORE_INDEX).sum()) == kept
    assert (packed["labels"][packed["input_ids"] == PAD_TOKEN_ID] == IGNORE_INDEX).all()


def test_images_stay_with_their_sample():
    model = make_model()
    items = samples(model)
    packed = PackCollator(PAD_TOKEN_ID, max_tokens=64)(items)
    rows = plan_rows([len(it["input_ids"]) for it in items], 64)
    expected = [
        it["pixel_values"] for row in rows for i in row if "pixel_values" in (it := items[i])
    ]
    torch.testing.assert_close(packed["pixel_values"], torch.cat(expected))
    # every image's placeholder run is there, in the same row-major order
    num_positions = int((packed["input_ids"] == IMAGE_TOKEN_ID).sum())
    assert num_positions == len(packed["pixel_values"]) * model.config.num_image_tokens


def test_packed_collation_refuses_what_packing_would_break():
    model = make_model()
    collator, count = packed_collation(PadCollator(PAD_TOKEN_ID), 64, model)
    assert count(collator(samples(model))) == sum(len(it["input_ids"]) for it in samples(model))
    with pytest.raises(ConfigError, match="PadCollator"):
        packed_collation(lambda items: items, 64, model)
    with pytest.raises(ConfigError, match="xattn"):
        packed_collation(PadCollator(PAD_TOKEN_ID), 64, make_model(connector="xattn"))
    with pytest.raises(ConfigError, match="max_tokens"):
        PackCollator(PAD_TOKEN_ID, max_tokens=0)


def test_train_with_packing_sees_the_same_first_loss_as_padding(tmp_path):
    """TrainConfig.packing changes the batch layout, not what a step learns from."""
    from ocelli.train import TrainConfig, train

    first_losses = {}
    for packing in (False, True):
        model = make_model()
        losses = []
        config = TrainConfig(
            max_steps=2, batch_size=4, packing=packing, pack_max_tokens=64, tensorboard=False
        )
        train(
            model,
            samples(model),
            PadCollator(PAD_TOKEN_ID),
            config,
            tmp_path / str(packing),
            callbacks=[lambda step, stats, losses=losses: losses.append(stats["loss"])],
        )
        first_losses[packing] = losses[0]
    assert first_losses[True] == pytest.approx(first_losses[False], abs=1e-5)


def loss_and_grads(model, batch: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.train()
    model.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("language_model", ["llama-tiny", "qwen2-tiny", "qwen2-moe-tiny"])
def test_per_sample_attention_and_labelled_head_match_the_dense_mask(language_model, monkeypatch):
    """Packed rows attend one sample at a time and project only labelled positions; the
    loss (router loss included) and gradients are those of transformers' block-diagonal
    mask over whole rows with logits everywhere."""
    model = make_model(language_model=language_model)
    packed = PackCollator(PAD_TOKEN_ID, max_tokens=64)(samples(model))
    calls = []
    kernel = AttentionInterface._global_mapping[PACKED_SDPA]
    monkeypatch.setitem(
        AttentionInterface._global_mapping,
        PACKED_SDPA,
        lambda *args, **kwargs: calls.append(1) or kernel(*args, **kwargs),
    )
    per_sample = loss_and_grads(model, packed)
    # a dense LM's last layer attends from the read positions only (ocelli.model.last_layer)
    layers = model.config.text_config.num_hidden_layers
    kernel_calls = layers if language_model == "qwen2-moe-tiny" else layers - 1
    assert len(calls) == kernel_calls
    assert model.language_model.config._attn_implementation == "sdpa"  # restored
    monkeypatch.setattr(modeling, "attends_per_sample", lambda language_model: False)
    dense = loss_and_grads(model, packed)
    assert len(calls) == kernel_calls
    torch.testing.assert_close(per_sample[0], dense[0], atol=1e-6, rtol=1e-6)
    # float32 summation order only: within 1e-5 of each gradient's largest value
    for fast, reference in zip(per_sample[1], dense[1], strict=True):
        torch.testing.assert_close(
            fast, reference, atol=1e-7 + 1e-5 * reference.abs().max(), rtol=0
        )


def test_packed_logits_come_only_at_labelled_positions():
    model = make_model()
    packed = PackCollator(PAD_TOKEN_ID, max_tokens=None)(samples(model))
    num_labelled = int((packed["labels"] != IGNORE_INDEX).sum())
    with torch.no_grad():
        logits = model(**packed).logits
    assert logits.shape == (num_labelled, model.config.text_config.vocab_size)


def test_sample_boundaries_follow_position_restarts_and_rows():
    position_ids = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 0, 1, 2, 3]])
    assert sample_boundaries(position_ids).tolist() == [0, 3, 5, 6, 8, 12]


def test_one_row_per_batch_when_the_model_attends_per_sample():
    model = make_model()
    collator, _ = packed_collation(PadCollator(PAD_TOKEN_ID), 64, model)
    assert collator.max_tokens is None
    assert len(collator(samples(model))["input_ids"]) == 1
    model.language_model.config._attn_implementation = "eager"  # needs the dense mask
    collator, _ = packed_collation(PadCollator(PAD_TOKEN_ID), 64, model)
    assert collator.max_tokens == 64


def test_gradient_checkpointing_keeps_the_dense_mask():
    """Its recomputation runs in the backward pass, outside the per-sample switch."""
    model = make_model()
    assert attends_per_sample(model.language_model)
    # transformers 5 renames gradient_checkpointing_enable; either turns it on
    enable = getattr(model, "activation_checkpointing_enable", model.gradient_checkpointing_enable)
    enable()
    assert not attends_per_sample(model.language_model)
