"""The batch's preallocated KV cache on its own: rows join right-aligned, leave in order,
and keep their keys, values, mask and positions through steps and reallocations."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicCache

from ocelli.serve import kv
from ocelli.serve.kv import BatchCache

LAYERS, HEADS, HEAD_DIM = 2, 2, 4


def prefilled(lengths: list[int], seed: int) -> tuple[DynamicCache, torch.Tensor]:
    """A left-padded prefill of rows with `lengths` tokens: its cache and mask."""
    generator = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    mask = torch.tensor([[0] * (longest - n) + [1] * n for n in lengths])
    cache = DynamicCache()
    for layer in range(LAYERS):
        keys = torch.randn(len(lengths), HEADS, longest, HEAD_DIM, generator=generator)
        cache.update(keys, keys + 100, layer)
    return cache, mask


def row_tokens(batch: BatchCache, row: int, layer: int = 0) -> torch.Tensor:
    """One row's keys at its real (unmasked) columns."""
    used = batch.window_mask[row].bool()
    return batch.cache.layers[layer].keys[row][:, used]


def decode_step(batch: BatchCache, step: int) -> torch.Tensor:
    """One step's update of every layer, as the model makes it; returns the positions."""
    _, positions = batch.step_inputs()
    new = torch.full((batch.num_rows, HEADS, 1, HEAD_DIM), float(step))
    for layer in batch.cache.layers:
        keys, values = layer.update(new, new + 100)
        assert keys.shape[2] == batch.length
        assert torch.equal(values[:, :, -1], keys[:, :, -1] + 100)
    return positions


def test_rows_keep_their_tokens_through_joins_leaves_and_growth(monkeypatch):
    monkeypatch.setattr(kv, "COLUMN_CHUNK", 4)  # reallocate every few steps
    first_cache, first_mask = prefilled([3, 5], seed=0)
    batch = BatchCache(max_rows=4)
    batch.join(first_cache, first_mask)
    expected = [first_cache.layers[0].keys[i][:, first_mask[i].bool()] for i in range(2)]
    positions = decode_step(batch, 7)
    assert positions.squeeze(1).tolist() == [3, 5]
    expected = [torch.cat([e, torch.full((HEADS, 1, HEAD_DIM), 7.0)], dim=1) for e in expected]

    # A longer newcomer re-pads the batch; a shorter one is right-aligned.
    second_cache, second_mask = prefilled([9, 2], seed=1)
    batch.join(second_cache, second_mask)
    expected += [second_cache.layers[0].keys[i][:, second_mask[i].bool()] for i in range(2)]
    assert batch.num_rows == 4 and batch.length == 9
    for row in range(4):
        assert torch.equal(row_tokens(batch, row), expected[row])

    batch.keep([1, 3])  # rows 0 and 2 leave; the others move up, in order
    expected = [expected[1], expected[3]]
    for step in range(10):  # past the capacity, twice
        positions = decode_step(batch, 20 + step)
        expected = [
            torch.cat([e, torch.full((HEADS, 1, HEAD_DIM), 20.0 + step)], dim=1) for e in expected
        ]
    assert positions.squeeze(1).tolist() == [6 + 9, 2 + 9]
    for row in range(2):
        assert torch.equal(row_tokens(batch, row), expected[row])
    # The padding every row shares was dropped when the buffers grew.
    assert bool(batch.window_mask[:, 0].any())


def test_the_window_drops_shared_padding_when_rows_leave_and_widens_for_newcomers(
    monkeypatch,
):
    monkeypatch.setattr(kv, "COLUMN_CHUNK", 64)  # no reallocation in this test
    long_cache, long_mask = prefilled([12], seed=2)
    batch = BatchCache(max_rows=3)
    batch.join(long_cache, long_mask)
    for step in range(3):
        decode_step(batch, step)
    short_cache, short_mask = prefilled([4], seed=3)
    batch.join(short_cache, short_mask)  # right-aligned: 11 columns of padding
    assert batch.length == 15
    short_tokens = row_tokens(batch, 1)

    batch.keep([1])  # the long row leaves: the window shrinks to the short row's tokens
    assert batch.length == 4 and bool(batch.window_mask.all())
    assert torch.equal(row_tokens(batch, 0), short_tokens)
    assert decode_step(batch, 9).squeeze(1).tolist() == [4]
    assert batch.length == 5

    # A longer newcomer widens the window leftwards over the dropped columns.
    capacity = batch.capacity
    newcomer_cache, newcomer_mask = prefilled([8], seed=4)
    batch.join(newcomer_cache, newcomer_mask)
    assert batch.length == 8 and batch.capacity == capacity  # no new buffers
    newcomer_tokens = newcomer_cache.layers[0].keys[0]
    assert torch.equal(row_tokens(batch, 1), newcomer_tokens)
    expected_short = torch.cat([short_tokens, torch.full((HEADS, 1, HEAD_DIM), 9.0)], dim=1)
    assert torch.equal(row_tokens(batch, 0), expected_short)
    # Columns left of the short row's tokens are padding, finite, and masked.
    keys = batch.cache.layers[0].keys
    assert torch.isfinite(keys).all() and batch.window_mask[0].tolist() == [0] * 3 + [1] * 5
