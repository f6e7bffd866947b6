"""The running batch's KV cache and attention mask, with rows joining and leaving.

All rows share one DynamicCache of shape (rows, heads, length, head_dim) per layer,
left-padded: each row's tokens end in the last column, the columns before its first
token are padding that the attention mask (rows, length) hides. A row joins by
left-padding whichever of the two caches is shorter and concatenating along the batch;
a row leaves by selecting the others and dropping columns that became padding in every
remaining row. Positions come from the mask, so RoPE sees each row's true positions
and a row decodes exactly as it would alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache, DynamicLayer

from ocelli.errors import ConfigError


def new_cache(text_config: object) -> DynamicCache:
    """An empty cache for the language model; only full-attention layers can be re-padded."""
    cache = DynamicCache(config=text_config)
    for layer in cache.layers:
        if type(layer) is not DynamicLayer:
            raise ConfigError(
                f"the language model uses {type(layer).__name__} cache layers (sliding-window "
                "or indexed attention); ocelli serve's batching engine supports full "
                "attention only; export the model (ocelli export) and serve it with vLLM"
            )
    return cache


class BatchCache:
    """KV cache plus attention mask of the rows being decoded."""

    def __init__(self, cache: DynamicCache, mask: torch.Tensor) -> None:
        self.cache = cache
        self.mask = mask

    @property
    def num_rows(self) -> int:
        return int(self.mask.shape[0])

    def step_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention mask and position ids for one new token per row."""
        self.mask = F.pad(self.mask, (0, 1), value=1)
        positions = self.mask.sum(dim=1, keepdim=True) - 1
        return self.mask, positions

    def join(self, other: BatchCache) -> None:
        """Append `other`'s rows after this batch's rows."""
        length = max(self.mask.shape[1], other.mask.shape[1])
        mine, theirs = _layers(self.cache), _layers(other.cache)
        for layer, joining in zip(mine, theirs, strict=True):
            layer.keys = torch.cat([_pad_left(layer.keys, length), _pad_left(joining.keys, length)])
            layer.values = torch.cat(
                [_pad_left(layer.values, length), _pad_left(joining.values, length)]
            )
        self.mask = torch.cat([_pad_left_2d(self.mask, length), _pad_left_2d(other.mask, length)])

    def keep(self, rows: list[int]) -> None:
        """Drop every row not in `rows`, then the columns no remaining row uses."""
        index = torch.tensor(rows, dtype=torch.long, device=self.mask.device)
        self.mask = self.mask.index_select(0, index)
        used = self.mask.any(dim=0)
        start = int(used.float().argmax()) if bool(used.any()) else self.mask.shape[1]
        self.mask = self.mask[:, start:]
        for layer in _layers(self.cache):
            layer.keys = layer.keys.index_select(0, index)[:, :, start:]
            layer.values = layer.values.index_select(0, index)[:, :, start:]


def prefill_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded prompt batch: 0 at each row's first real token."""
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


def _layers(cache: DynamicCache) -> list[DynamicLayer]:
    return list(cache.layers)


def _pad_left(states: torch.Tensor, length: int) -> torch.Tensor:
    return F.pad(states, (0, 0, length - states.shape[2], 0))


def _pad_left_2d(mask: torch.Tensor, length: int) -> torch.Tensor:
    return F.pad(mask, (length - mask.shape[1], 0))
