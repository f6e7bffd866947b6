"""Sequence packing: several conversations, with their images, in one row of a batch.

A padded batch spends compute on padding up to its longest sample; a packed batch puts
samples end to end in rows of about `max_tokens` tokens, so the same samples need fewer,
fuller rows. Attention stays inside each sample through `position_ids` that restart at 0
per sample, no `attention_mask` and `use_cache=False`: transformers (5.x) then builds a
block-diagonal causal mask from the restarts, for the sdpa and eager kernels alike
(`masking_utils.find_packed_sequence_indices`). It looks for restarts only without a KV
cache, and the LM makes one whenever use_cache is on (its config default), so the batch
turns it off. tests/data/test_packing.py checks that a packed batch gives each sample
the loss it has unpacked, and that without the restarts it would not.

With a language model on sdpa, ocelli's model attends to each sample of a packed row on
its own (ocelli.model.packed_attention), so a row's length costs nothing and no mask is
built: `train()` then puts all of a batch's samples in one row, with no padding at all.
`max_tokens` bounds the rows of other attention kernels, whose cost grows with the
square of a row's length.

Images stay with their sample: the model writes image features over the image-token
positions in row-major order, so the collator concatenates each row's images in the
order its samples sit in the row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ocelli.data.collate import PadCollator
from ocelli.data.processing import IGNORE_INDEX
from ocelli.errors import ConfigError
from ocelli.model.packed_attention import attends_per_sample

IMAGE_KEYS = ("pixel_values", "vision_features")


def plan_rows(lengths: Sequence[int], max_tokens: int | None) -> list[list[int]]:
    """Sample indices per row, first fit in the given order (deterministic); None: one row.

    A sample longer than `max_tokens` gets a row of its own: the budget is a target for
    filling rows, never a reason to cut a conversation."""
    if max_tokens is None:
        return [list(range(len(lengths)))]
    rows: list[list[int]] = []
    room: list[int] = []
    for index, length in enumerate(lengths):
        for row, free in enumerate(room):
            if length <= free:
                rows[row].append(index)
                room[row] -= length
                break
        else:
            rows.append([index])
            room.append(max(max_tokens - length, 0))
    return rows


class PackCollator:
    """Packs a list of samples (input_ids, labels, optional images) into rows of about
    `max_tokens` tokens, or all in one row with `max_tokens=None`.

    The batch holds input_ids, labels and position_ids of shape (rows, width), the
    images of every row in order and use_cache=False; no attention_mask, which would
    switch transformers off its packed-sequence path. Padding at a row's end forms a segment of its own
    with labels -100, so it attends to nothing real and costs no loss."""

    def __init__(
        self, pad_token_id: int, max_tokens: int | None, pad_to_multiple_of: int = 1
    ) -> None:
        if max_tokens is not None and max_tokens < 1:
            raise ConfigError(f"pack max_tokens must be >= 1, got {max_tokens}")
        self.pad_token_id = pad_token_id
        self.max_tokens = max_tokens
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, items: Sequence[dict[str, torch.Tensor | None]]) -> dict[str, Any]:
        rows = plan_rows([len(item["input_ids"]) for item in items], self.max_tokens)
        longest = max(sum(len(items[i]["input_ids"]) for i in row) for row in rows)
        width = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        position_ids = torch.zeros((len(rows), width), dtype=torch.long)
        images: dict[str, list[torch.Tensor]] = {key: [] for key in IMAGE_KEYS}
        for row, members in enumerate(rows):
            start = 0
            for index in members:
                item = items[index]
                end = start + len(item["input_ids"])
                input_ids[row, start:end] = item["input_ids"]
                labels[row, start:end] = item["labels"]
                # The LM predicts labels[t] from position t-1; the first token of a
                # sample would be predicted from the previous sample, so it gets none
                # (unpacked, position 0 has no predecessor and no loss either).
                labels[row, start] = IGNORE_INDEX
                position_ids[row, start:end] = torch.arange(end - start)
                for key in IMAGE_KEYS:
                    if item.get(key) is not None:
                        images[key].append(item[key])
                start = end
            position_ids[row, start:] = torch.arange(width - start)
        batch: dict[str, Any] = {
            "input_ids": input_ids,
            "labels": labels,
            "position_ids": position_ids,
            "use_cache": False,  # a cache, even an empty one, hides the restarts
        }
        batch.update({key: torch.cat(found) for key, found in images.items() if found})
        return batch

    def count_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        """Non-padding tokens of a packed batch, for tokens/s."""
        return int((batch["input_ids"] != self.pad_token_id).sum())


def packed_collation(
    collate_fn: Callable[[list[Any]], Any], max_tokens: int, model: nn.Module
) -> tuple[PackCollator, Callable[[Any], int]]:
    """The packing counterpart of a `PadCollator` and its token counter, for `train()`:
    one row per batch when the model attends per sample, else rows of `max_tokens`.

    Refuses what packing would silently break: collators of other batch layouts, and
    connectors acting inside the LM's layers (gated cross-attention, visual experts),
    which attend from a row's text to every image in the row, across samples."""
    if not isinstance(collate_fn, PadCollator):
        raise ConfigError(
            f"train.packing needs conversation samples collated by PadCollator, got "
            f"{type(collate_fn).__name__}; set train.packing: false for this stage"
        )
    connector = getattr(model, "connector", None)
    if getattr(connector, "acts_inside_language_model", False):
        name = getattr(getattr(model, "config", None), "connector", type(connector).__name__)
        raise ConfigError(
            f"connector {name!r} acts inside the language model's layers and would let a "
            "packed sample see the images of the others in its row; set train.packing: false "
            "or use a token-level connector (mlp, qformer, perceiver, pixel-shuffle, ...)"
        )
    language_model = getattr(model, "language_model", None)
    if language_model is not None and attends_per_sample(language_model):
        max_tokens = None
    collator = PackCollator(collate_fn.pad_token_id, max_tokens, collate_fn.pad_to_multiple_of)
    return collator, collator.count_tokens
