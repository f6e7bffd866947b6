import pytest
import torch

from .tiny import EOS_TOKEN_ID, PAD_TOKEN_ID, images, left_pad, make_model, prompt

MAX_NEW_TOKENS = 6


@pytest.fixture(scope="module")
def model():
    return make_model("clip-tiny", "llama-tiny")


def rows_and_images(model):
    rows = [
        prompt(model, [1, 8, 9, 10, 11]),
        prompt(model, [1, 12]),
        prompt(model, [1], num_images=2),
    ]
    return rows, images(4), [1, 1, 2]


def generate(model, rows, pixel_values, **options):
    ids, mask = left_pad(rows)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            pixel_values=pixel_values,
            max_new_tokens=MAX_NEW_TOKENS,
            pad_token_id=PAD_TOKEN_ID,
            eos_token_id=EOS_TOKEN_ID,
            **options,
        )
    return out[:, ids.shape[1] :]


def one_by_one(model, rows, pixel_values, per_row, **options):
    outputs, start = [], 0
    for row, count in zip(rows, per_row, strict=True):
        outputs.append(generate(model, [row], pixel_values[start : start + count], **options)[0])
        start += count
    return outputs


def strip(tokens):
    """Tokens up to and including the first end-of-sequence (the rest is padding)."""
    tokens = tokens.tolist()
    return tokens[: tokens.index(EOS_TOKEN_ID) + 1] if EOS_TOKEN_ID in tokens else tokens


@pytest.mark.parametrize(
    "options", [{"do_sample": False}, {"num_beams": 3, "do_sample": False}], ids=["greedy", "beam"]
)
def test_batched_left_padded_generation_equals_one_by_one(model, options):
    rows, pixel_values, per_row = rows_and_images(model)
    batched = generate(model, rows, pixel_values, **options)
    single = one_by_one(model, rows, pixel_values, per_row, **options)
    assert [strip(row) for row in batched] == [strip(row) for row in single]


def test_sampling_is_reproducible_with_a_seed(model):
    rows, pixel_values, _ = rows_and_images(model)
    torch.manual_seed(3)
    first = generate(model, rows, pixel_values, do_sample=True, top_k=20, temperature=1.5)
    torch.manual_seed(3)
    second = generate(model, rows, pixel_values, do_sample=True, top_k=20, temperature=1.5)
    assert first.shape[0] == 3 and torch.equal(first, second)


def test_images_are_encoded_once_at_prefill(model, monkeypatch):
    calls = []
    original = model.vision_tower.forward
    monkeypatch.setattr(
        model.vision_tower, "forward", lambda pixels: calls.append(len(pixels)) or original(pixels)
    )
    rows, pixel_values, _ = rows_and_images(model)
    generate(model, rows, pixel_values, do_sample=False)
    assert calls == [4]
    generate(model, rows, pixel_values, num_beams=2, do_sample=False)
    assert calls[1:] == [8]  # each sample's images copied per beam, once


def test_the_images_change_the_answer(model):
    rows, pixel_values, _ = rows_and_images(model)
    first = generate(model, rows, pixel_values, do_sample=False)
    other = generate(model, rows, images(4, seed=9) * 3, do_sample=False)
    assert not torch.equal(first, other)
