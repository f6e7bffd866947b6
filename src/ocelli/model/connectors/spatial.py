"""Helpers for connectors that treat the image features as a square grid
(`pixel-shuffle`, `c-abstractor`)."""

from __future__ import annotations

import math

import torch
from torch import nn

from ocelli.errors import ConfigError


def grid_side(connector: type, num_tokens: int) -> int:
    """Side of the square grid `num_tokens` features form; ConfigError when not square."""
    side = math.isqrt(num_tokens)
    if num_tokens < 1 or side * side != num_tokens:
        raise ConfigError(
            f"connector {connector.__name__} needs a square grid of image features, but the "
            f"encoder gives {num_tokens} per image; set keep_cls false (CLIP's CLS token is "
            "not on the grid) or use an encoder whose image_size/patch_size gives a square grid"
        )
    return side


def to_grid(features: torch.Tensor) -> torch.Tensor:
    """(B, side*side, C) -> (B, C, side, side), row-major as encoders flatten them."""
    batch, num_tokens, channels = features.shape
    side = math.isqrt(num_tokens)
    return features.transpose(1, 2).reshape(batch, channels, side, side)


def projector(input_dim: int, text_dim: int) -> nn.Sequential:
    """Two linear layers with GELU between (the LLaVA-1.5 projector shape)."""
    return nn.Sequential(nn.Linear(input_dim, text_dim), nn.GELU(), nn.Linear(text_dim, text_dim))


def check_token_budget(name: str, num_tokens: int, num_input_tokens: int, verb: str) -> int:
    """`num_tokens` when a grid connector that `verb`s the encoder's features can give that
    many; ConfigError otherwise (a square grid is checked first)."""
    side = math.isqrt(num_input_tokens)
    if num_tokens > num_input_tokens:
        raise ConfigError(
            f"connector {name}: connector_config.num_tokens {num_tokens} is more than the "
            f"encoder's {num_input_tokens} ({side}x{side}) features; it {verb}, so use at most "
            f"{num_input_tokens}"
        )
    return num_tokens
