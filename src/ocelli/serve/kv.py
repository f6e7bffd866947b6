"""The running batch's KV cache and attention mask, with rows joining and leaving.

Every layer's keys and values live in one preallocated buffer of shape
(max_rows, heads, capacity, head_dim); the batch is its first `num_rows` rows and the
columns of its window, `start` to `end`, left-padded: each row's tokens end in the last
column, the columns before its first token are padding that the attention mask (rows,
window) hides. Positions are kept per row, so RoPE sees each row's true positions and a
row decodes exactly as it would alone.

A decode step writes one column in place, so a step copies nothing it already holds
(transformers' DynamicCache concatenates, re-copying every layer's whole cache each
step). A row joins by being copied into the free rows below the batch, right-aligned to
the window's end; a row leaves by moving the rows after it up. When rows leave, the
window's start moves past the columns that are padding in every row left: a newcomer
padded to a long-running row's length otherwise pays for that padding in every step's
attention until the buffers are next reallocated (a decode step's attention reads every
column of the window, and at 16 rows about 40% of them were padding). The buffers are
reallocated, with `COLUMN_CHUNK` spare columns, when the window reaches their end.

Columns left of the window are padding (mask 0, finite keys and values) in every row,
so the window may widen leftwards over them for a longer newcomer."""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from ocelli.errors import ConfigError

COLUMN_CHUNK = 128  # spare columns per reallocation: one every COLUMN_CHUNK decode steps


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


def prefill_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded prompt batch: 0 at each row's first real token."""
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


class _BufferLayer(DynamicLayer):
    """One layer's cache as views of its preallocated buffers; `update` writes in place
    the columns up to `end`, which `BatchCache.step_inputs` opened, and returns the window
    from `start`. (No reference back to the BatchCache: a cycle would keep the buffers
    alive until the garbage collector ran.)"""

    def __init__(self, key_buffer: torch.Tensor, value_buffer: torch.Tensor) -> None:
        super().__init__()
        self.key_buffer, self.value_buffer = key_buffer, value_buffer
        self.start = self.end = 0
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rows, end = key_states.shape[0], self.end
        begin = end - key_states.shape[2]
        self.key_buffer[:rows, :, begin:end] = key_states
        self.value_buffer[:rows, :, begin:end] = value_states
        self.keys = self.key_buffer[:rows, :, self.start : end]
        self.values = self.value_buffer[:rows, :, self.start : end]
        return self.keys, self.values


class BatchCache:
    """KV cache, attention mask and next position ids of the rows being decoded."""

    def __init__(self, max_rows: int) -> None:
        self.max_rows = max_rows
        self.num_rows = 0
        self.start = 0  # the window's first column
        self.end = 0  # one past its last: every row's newest token is in column end - 1
        self.layers: list[_BufferLayer] = []
        self.mask = torch.zeros(0, 0, dtype=torch.long)
        self.positions = torch.zeros(0, dtype=torch.long)
        self.cache: Cache | None = None  # what the model reads and writes, once allocated

    @property
    def capacity(self) -> int:
        return int(self.mask.shape[1])

    @property
    def length(self) -> int:
        """Columns in the window: what each row's attention reads."""
        return self.end - self.start

    @property
    def window_mask(self) -> torch.Tensor:
        """The attention mask of the batch's rows over the window, (rows, length)."""
        return self.mask[: self.num_rows, self.start : self.end]

    def step_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Open one column for a new token per row: (attention mask, position ids)."""
        rows = self.num_rows
        if self.end == self.capacity:
            self._reallocate(self.length + 1)
        self.mask[:rows, self.end] = 1
        self.end += 1
        for layer in self.layers:
            layer.end = self.end
        positions = self.positions[:rows].unsqueeze(1).clone()
        self.positions[:rows] += 1
        return self.window_mask, positions

    def join(self, prefilled: DynamicCache, mask: torch.Tensor) -> None:
        """Append the rows of a prefilled cache (left-padded, with its mask) to the batch."""
        joining, prompt_length = mask.shape
        if self.num_rows + joining > self.max_rows:
            raise ValueError(f"{self.num_rows} + {joining} rows exceed {self.max_rows}")
        if self.cache is None:
            self._allocate(list(prefilled.layers), prompt_length, mask)
        elif prompt_length > self.length:
            self._widen(prompt_length)  # the batch's rows get left-padded to the newcomers'
        begin, end = self.num_rows, self.num_rows + joining
        first = self.end - prompt_length  # the newcomers' first column
        for layer, joining_layer in zip(self.layers, prefilled.layers, strict=True):
            for buffer, states in (
                (layer.key_buffer, joining_layer.keys),
                (layer.value_buffer, joining_layer.values),
            ):
                # Padding must be finite: a masked key still enters the product as 0 x value.
                # From column 0, not the window's start: the window may widen over it.
                buffer[begin:end, :, :first] = 0
                buffer[begin:end, :, first : self.end] = states
        self.mask[begin:end] = 0
        self.mask[begin:end, first : self.end] = mask
        self.positions[begin:end] = mask.sum(dim=1)
        self.num_rows = end
        self._refresh_views()

    def keep(self, rows: list[int]) -> None:
        """Keep only `rows` (increasing), in that order, as rows 0, 1, ..."""
        first_moved = next((new for new, old in enumerate(rows) if new != old), len(rows))
        if first_moved < len(rows):
            index = torch.tensor(rows[first_moved:], dtype=torch.long, device=self.mask.device)
            span = slice(first_moved, len(rows))
            # index_select copies first, so moving rows up never reads a moved row.
            for buffer in (self.mask, self.positions):
                buffer[span] = buffer.index_select(0, index)
            # Keys and values only in the window: left of it any finite values serve, as
            # the mask hides them, and right of it columns are written before being read.
            window = slice(self.start, self.end)
            for layer in self.layers:
                for buffer in (layer.key_buffer, layer.value_buffer):
                    buffer[span, :, window] = buffer[:, :, window].index_select(0, index)
        self.num_rows = len(rows)
        self._drop_shared_padding()
        self._refresh_views()

    def _drop_shared_padding(self) -> None:
        """Move the window's start past the columns that are padding in every row (the
        last column never is: it holds every row's newest token)."""
        if self.num_rows:
            used = self.window_mask.any(dim=0)
            self.start += int(used.to(torch.int8).argmax())

    def _widen(self, length: int) -> None:
        """Make the window `length` columns wide: leftwards over padding while the buffers
        have the columns, else into new buffers."""
        missing = length - self.length
        if missing <= self.start:
            self.start -= missing
            self._refresh_views()
        else:
            self._reallocate(self.length, min_length=length)

    def _allocate(self, prefilled: list[DynamicLayer], length: int, mask: torch.Tensor) -> None:
        # Uninitialised: a row's columns are all written or zeroed when it joins.
        for layer in prefilled:
            _, heads, _, head_dim = layer.keys.shape
            shape = (self.max_rows, heads, length + COLUMN_CHUNK, head_dim)
            self.layers.append(
                _BufferLayer(layer.keys.new_empty(shape), layer.values.new_empty(shape))
            )
        self.cache = Cache(layers=self.layers)
        self.mask = mask.new_zeros(self.max_rows, length + COLUMN_CHUNK)
        self.positions = mask.new_zeros(self.max_rows)
        self.start, self.end = 0, length

    def _reallocate(self, needed: int, min_length: int = 0) -> None:
        """New buffers holding `needed` window columns plus spare ones, the window
        starting at column 0: leading all-padding columns are dropped, and the rows are
        left-padded to at least `min_length`."""
        rows = self.num_rows
        used = self.window_mask.any(dim=0)
        dropped = int(used.to(torch.int8).argmax()) if bool(used.any()) else self.length
        start = self.start + dropped
        kept = self.end - start
        length = max(kept, min_length)
        capacity = max(needed - dropped, length) + COLUMN_CHUNK
        offset = length - kept
        mask = self.mask.new_zeros(self.max_rows, capacity)
        mask[:rows, offset:length] = self.mask[:rows, start : self.end]

        def moved(old: torch.Tensor) -> torch.Tensor:
            new = old.new_empty(old.shape[0], old.shape[1], capacity, old.shape[3])
            new[:rows, :, :offset] = 0
            new[:rows, :, offset:length] = old[:rows, :, start : self.end]
            return new

        for layer in self.layers:
            layer.key_buffer, layer.value_buffer = (
                moved(layer.key_buffer),
                moved(layer.value_buffer),
            )
        self.mask, self.start, self.end = mask, 0, length
        self._refresh_views()

    def _refresh_views(self) -> None:
        """Point each layer's keys and values at the batch's rows and window."""
        for layer in self.layers:
            layer.keys = layer.key_buffer[: self.num_rows, :, self.start : self.end]
            layer.values = layer.value_buffer[: self.num_rows, :, self.start : self.end]
            layer.start, layer.end = self.start, self.end
