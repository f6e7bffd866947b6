"""Attention blocks shared by the connectors that attend: the Q-Former and the Perceiver
resampler (learned queries reading image features) and Flamingo's gated cross-attention.

`Attention` is written out rather than taken from nn.MultiheadAttention because the
gated cross-attention needs a mask per query row, and a row that may attend to nothing
(a text without images) must get zeros, where softmax over no keys would give NaN.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


class Attention(nn.Module):
    """Multi-head attention of `dim`-wide queries over `context_dim`-wide keys/values."""

    def __init__(self, dim: int, num_heads: int, context_dim: int | None = None) -> None:
        super().__init__()
        context_dim = context_dim or dim
        self.num_heads = num_heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(context_dim, dim)
        self.value = nn.Linear(context_dim, dim)
        self.out = nn.Linear(dim, dim)

    def _heads(self, states: torch.Tensor) -> torch.Tensor:
        batch, length, _ = states.shape
        return states.view(batch, length, self.num_heads, -1).transpose(1, 2)

    def forward(
        self, queries: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`mask` (batch, num_queries or 1, num_keys), True where a query may attend."""
        query = self._heads(self.query(queries))
        key, value = self._heads(self.key(context)), self._heads(self.value(context))
        if mask is None:
            attended = functional.scaled_dot_product_attention(query, key, value)
        else:
            has_keys = mask.any(-1, keepdim=True)
            # a row without keys attends everywhere (finite), then is zeroed
            attended = functional.scaled_dot_product_attention(
                query, key, value, attn_mask=(mask | ~has_keys).unsqueeze(1)
            )
            attended = attended * has_keys.unsqueeze(1).to(attended.dtype)
        batch, _, length, _ = attended.shape
        return self.out(attended.transpose(1, 2).reshape(batch, length, -1))


class FeedForward(nn.Sequential):
    """Pre-norm two-layer MLP (the residual is added by the caller)."""

    def __init__(self, dim: int, multiplier: int = 4) -> None:
        super().__init__(
            nn.LayerNorm(dim),
            nn.Linear(dim, multiplier * dim),
            nn.GELU(),
            nn.Linear(multiplier * dim, dim),
        )


class ResamplerLayer(nn.Module):
    """One layer of learned queries reading image features, pre-norm and residual.

    Q-Former (BLIP-2): self-attention among the queries, cross-attention to the features,
    feed-forward. Perceiver resampler (Flamingo): no self-attention; the latents attend to
    the features and to themselves in one attention over [features; latents].
    """

    def __init__(self, dim: int, num_heads: int, self_attention: bool, attend_to_queries: bool):
        super().__init__()
        self.attend_to_queries = attend_to_queries
        self.self_norm = nn.LayerNorm(dim) if self_attention else None
        self.self_attention = Attention(dim, num_heads) if self_attention else None
        self.query_norm = nn.LayerNorm(dim)
        self.feature_norm = nn.LayerNorm(dim)
        self.cross_attention = Attention(dim, num_heads)
        self.feed_forward = FeedForward(dim)

    def forward(self, queries: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if self.self_attention is not None:
            normed = self.self_norm(queries)
            queries = queries + self.self_attention(normed, normed)
        normed = self.query_norm(queries)
        context = self.feature_norm(features)
        if self.attend_to_queries:
            context = torch.cat([context, normed], dim=1)
        queries = queries + self.cross_attention(normed, context)
        return queries + self.feed_forward(queries)


class QueryResampler(nn.Module):
    """(B, N, input_dim) features -> (B, num_queries, output_dim): a fixed number of
    learned queries, whatever N is. Used by `qformer`, `perceiver` and `xattn`."""

    def __init__(
        self,
        input_dim: int,
        hidden_size: int,
        output_dim: int,
        num_queries: int,
        num_layers: int,
        num_heads: int,
        *,
        self_attention: bool,
        attend_to_queries: bool,
    ) -> None:
        super().__init__()
        self.input_projection = nn.Linear(input_dim, hidden_size)
        self.queries = nn.Parameter(torch.randn(num_queries, hidden_size) * 0.02)
        self.layers = nn.ModuleList(
            ResamplerLayer(hidden_size, num_heads, self_attention, attend_to_queries)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_size)
        self.output_projection = nn.Linear(hidden_size, output_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        features = self.input_projection(features)
        queries = self.queries.unsqueeze(0).expand(features.shape[0], -1, -1)
        for layer in self.layers:
            queries = layer(queries, features)
        return self.output_projection(self.norm(queries))


class GatedCrossAttentionBlock(nn.Module):
    """Flamingo's block inserted before an LM layer: the text attends to the images, then
    a feed-forward, each added through tanh(gate). The gates start at zero, so a new
    block leaves the LM's hidden states exactly as they were."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attention = Attention(dim, num_heads)
        self.attention_gate = nn.Parameter(torch.zeros(1))
        self.feed_forward = FeedForward(dim)
        self.feed_forward_gate = nn.Parameter(torch.zeros(1))

    def forward(
        self, hidden_states: torch.Tensor, context: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        attended = self.attention(self.norm(hidden_states), context, mask)
        hidden_states = hidden_states + self.attention_gate.tanh() * attended
        return hidden_states + self.feed_forward_gate.tanh() * self.feed_forward(hidden_states)
