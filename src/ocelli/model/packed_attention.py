"""Attention for packed rows, one sample at a time, without a dense mask.

A packed row holds several samples end to end, their `position_ids` restarting at 0 for
each. transformers' sdpa path keeps attention inside each sample by building a
block-diagonal causal mask of the row's length squared, and SDPA then computes every
query against every key of the row. Here each sample's slice of the row goes through
SDPA on its own with `is_causal=True`, so the work is the sum of the samples' squared
lengths (halved by causality), a row's length costs nothing, and no mask is built. The
result is the same attention: nothing a sample attends to changes.

`packed_attention(language_model, position_ids)` switches a language model with sdpa
attention to this kernel for one call; the kernel finds the samples through the
`cu_seq_lens_q` keyword (the cumulative sample lengths along the flattened batch, as
flash-attention's varlen kernels take them), which the context passes to the LM.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AttentionInterface

PACKED_SDPA = "ocelli_packed_sdpa"


def sample_boundaries(position_ids: torch.Tensor) -> torch.Tensor:
    """Cumulative sample lengths (starting at 0) along the flattened (rows, width) batch.

    A sample starts at every row start and wherever the position ids do not go up by
    one, the rule transformers' own packed-sequence detection follows."""
    starts = torch.ones_like(position_ids, dtype=torch.bool)
    starts[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    flat = starts.flatten().nonzero().flatten()
    total = torch.tensor([position_ids.numel()], device=flat.device)
    return torch.cat([flat, total]).to(torch.int32)


def attends_per_sample(language_model: nn.Module) -> bool:
    """Whether `packed_attention` keeps this LM's attention exact: sdpa, full causal
    attention in every layer (no sliding window, no logit soft-capping), and no gradient
    checkpointing, whose recomputation in the backward pass runs after the switch back."""
    config = language_model.config
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    return (
        config._attn_implementation == "sdpa"
        and layer_types == {"full_attention"}
        and getattr(config, "attn_logit_softcapping", None) is None
        and not any(
            getattr(module, "gradient_checkpointing", False) for module in language_model.modules()
        )
    )


@contextmanager
def packed_attention(language_model: nn.Module, position_ids: torch.Tensor) -> Iterator[dict]:
    """Within the block, the LM attends per sample; yields the keywords to pass it.

    The LM's batch must be one (or more) packed rows: `position_ids` restarting at 0 per
    sample, no attention_mask, no KV cache."""
    config = language_model.config
    previous = config._attn_implementation
    config._attn_implementation = PACKED_SDPA
    try:
        yield {"cu_seq_lens_q": sample_boundaries(position_ids)}
    finally:
        config._attn_implementation = previous


def packed_sdpa_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """(batch, heads, seq, head_dim) in, (batch, seq, heads, head_dim) out, as
    transformers' sdpa_attention_forward; each sample is attended to on its own."""
    if cu_seq_lens_q is None or attention_mask is not None:
        raise ValueError(
            f"{PACKED_SDPA} attention needs packed rows: cu_seq_lens_q and no attention_mask "
            "(use ocelli.model.packed_attention.packed_attention around the LM call)"
        )
    if kwargs.get("sliding_window") is not None:
        raise ValueError(f"{PACKED_SDPA} attention has no sliding window; keep sdpa for this LM")
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    batch, heads, width, head_dim = query.shape
    # The rows one after the other, samples never crossing a row (a row start is a sample start).
    flat = [t.transpose(0, 1).reshape(heads, batch * width, head_dim) for t in (query, key, value)]
    lengths = torch.diff(cu_seq_lens_q).tolist()
    outputs = [
        F.scaled_dot_product_attention(
            q.unsqueeze(0),
            k.unsqueeze(0),
            v.unsqueeze(0),
            dropout_p=dropout,
            scale=scaling,
            is_causal=True,
        )
        for q, k, v in zip(*(t.split(lengths, dim=1) for t in flat), strict=True)
    ]
    output = torch.cat(outputs, dim=2).reshape(heads, batch, width, head_dim)
    return output.permute(1, 2, 0, 3).contiguous(), None


AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
