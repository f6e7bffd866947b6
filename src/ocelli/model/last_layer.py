"""The language model's last decoder layer, computed in full only where the LM head reads it.

In a packed training step the LM head and loss run only at the positions whose next
token has a label (`labelled_positions` in modeling.py, through `logits_to_keep`). The
last decoder layer's output at any other position goes nowhere, so there it needs only
what the read positions attend to: the keys and values, from the input norm, at every
position. The query projection, attention, output projection, residual, post-attention
norm and MLP run at the read positions alone. The loss and gradients are the same;
short answers leave most positions unread, which saves most of one layer's work.

`last_layer_at(language_model, positions, lm_kwargs)` puts a stand-in in the last
layer's place for one call where that is exact: a Llama or Qwen2 LM (whose layer this
module computes, step by step as transformers does) attending per sample
(ocelli.model.packed_attention), asked for no hidden states or attention weights, and
with no hooks on that layer, which would see different shapes (feature-level
connectors, transformers' output capture). A mixture-of-experts LM keeps every layer
whole: its router loss counts every token of every layer. The stand-in writes zeros at
the unread positions of the layer's output, which the final norm and the head never
read back into the loss.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from transformers.models.llama.modeling_llama import rotate_half

from ocelli.model.packed_attention import PACKED_SDPA

# Model types whose decoder layer is the one `decoder_layer_at` computes: input norm,
# rotary self-attention (q/k/v/o projections), residual, post-attention norm, MLP, residual.
LAYER_LAYOUTS = ("llama", "qwen2")


def computes_last_layer_at_positions(language_model: nn.Module, lm_kwargs: Mapping) -> bool:
    """Whether the LM's last layer may run at the read positions only for this call, made
    with `lm_kwargs`: a known layer layout, per-sample attention, no per-layer outputs
    asked for, no hooks on the layer or its parts."""
    config = language_model.config
    layer = _last_layer(language_model)
    return (
        config.model_type in LAYER_LAYOUTS
        and config._attn_implementation == PACKED_SDPA
        and layer is not None
        and not any(
            lm_kwargs.get(name, getattr(config, name, False))
            for name in ("output_hidden_states", "output_attentions")
        )
        and not any(_has_hooks(module) for module in layer.modules())
    )


@contextmanager
def last_layer_at(
    language_model: nn.Module, positions: torch.Tensor | None, lm_kwargs: Mapping
) -> Iterator[None]:
    """Within the block, the LM's last layer computes its output only at `positions`
    (a boolean (rows, width) mask, as `logits_to_keep` takes it) where that is exact
    (`computes_last_layer_at_positions`); with None, or where it is not, nothing changes."""
    if positions is None or not computes_last_layer_at_positions(language_model, lm_kwargs):
        yield
        return
    layers = language_model.model.layers
    last = len(layers) - 1
    layer = layers[last]
    layers[last] = _LayerAtPositions(layer, positions)
    try:
        yield
    finally:
        layers[last] = layer


class _LayerAtPositions(nn.Module):
    """Stands in for a decoder layer for one call; see `last_layer_at`."""

    def __init__(self, layer: nn.Module, positions: torch.Tensor) -> None:
        super().__init__()
        self.layer = layer
        self.positions = positions

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        cu_seq_lens_q: torch.Tensor,
        **kwargs: Any,
    ) -> torch.Tensor:
        flat_positions = self.positions.flatten().nonzero().squeeze(1)
        read = decoder_layer_at(
            self.layer, hidden_states, flat_positions, position_embeddings, cu_seq_lens_q
        )
        unread_zeros = torch.zeros_like(hidden_states).flatten(0, 1)
        return unread_zeros.index_copy(0, flat_positions, read).view_as(hidden_states)


def decoder_layer_at(
    layer: nn.Module,
    hidden_states: torch.Tensor,
    flat_positions: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    boundaries: torch.Tensor,
) -> torch.Tensor:
    """A Llama-style decoder layer's output (num_positions, hidden) at `flat_positions`
    (ascending indices into the flattened (rows, width) batch) of packed rows whose
    samples start at `boundaries` (cu_seq_lens_q); keys and values come from every position."""
    attention = layer.self_attn
    head_dim = attention.head_dim
    tokens = hidden_states.flatten(0, 1)  # (rows * width, hidden)
    normed = layer.input_layernorm(tokens)
    cos, sin = (t.flatten(0, 1).unsqueeze(1) for t in position_embeddings)  # per token and head

    def heads(projection: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return projection(inputs).unflatten(-1, (-1, head_dim))  # (tokens, heads, head_dim)

    key = _rotate(heads(attention.k_proj, normed), cos, sin)
    value = heads(attention.v_proj, normed)
    query = _rotate(
        heads(attention.q_proj, normed[flat_positions]), cos[flat_positions], sin[flat_positions]
    )
    groups = attention.num_key_value_groups
    attended = attend_at(
        query,
        key.repeat_interleave(groups, dim=1),
        value.repeat_interleave(groups, dim=1),
        boundaries,
        flat_positions,
        scaling=attention.scaling,
        dropout=attention.attention_dropout if attention.training else 0.0,
    )
    hidden = tokens[flat_positions] + attention.o_proj(attended.flatten(1))
    return hidden + layer.mlp(layer.post_attention_layernorm(hidden))


def attend_at(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    boundaries: torch.Tensor,
    query_positions: torch.Tensor,
    scaling: float,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Causal attention of the queries (num_queries, heads, head_dim) at `query_positions`
    (ascending flat indices) to the keys and values (tokens, heads, head_dim) of their own
    sample (from `boundaries`) up to themselves; (num_queries, heads, head_dim)."""
    starts = boundaries.to(query_positions.dtype)
    sample = torch.searchsorted(starts, query_positions, right=True) - 1
    offsets = query_positions - starts[sample]  # each query's position in its sample
    lengths = torch.diff(starts).tolist()
    counts = torch.bincount(sample, minlength=len(lengths)).tolist()
    outputs = []
    for q, k, v, q_offsets in zip(
        query.split(counts),
        key.split(lengths),
        value.split(lengths),
        offsets.split(counts),
        strict=True,
    ):
        visible = torch.arange(len(k), device=k.device) <= q_offsets.unsqueeze(1)
        attended = F.scaled_dot_product_attention(
            q.transpose(0, 1),
            k.transpose(0, 1),
            v.transpose(0, 1),
            attn_mask=visible,
            dropout_p=dropout,
            scale=scaling,
        )
        outputs.append(attended.transpose(0, 1))
    return torch.cat(outputs)


def _rotate(states: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding, as transformers' Llama and Qwen2 apply it."""
    return states * cos + rotate_half(states) * sin


def _last_layer(language_model: nn.Module) -> nn.Module | None:
    layers = getattr(getattr(language_model, "model", None), "layers", None)
    return layers[-1] if isinstance(layers, nn.ModuleList) and len(layers) else None


def _has_hooks(module: nn.Module) -> bool:
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or module._backward_hooks
        or module._backward_pre_hooks
    )
