"""`train.compile`: torch.compile on the block a training step repeats, the LM's layers.

Each decoder layer of the model's language model is compiled (inductor; dynamic shapes,
so batches and packed rows of any length reuse one graph); the vision tower, connector,
image merge and loss stay eager, as does the per-sample attention of packed rows (a
Python loop over the samples, which the compiled layers call out to). The one-off
compile takes minutes on a CPU and a step gains about a tenth on the tiny models, so it
pays off in runs of thousands of steps, not in the quickstart's hundreds; it is off by
default.
"""

from __future__ import annotations

from torch import nn

from ocelli.errors import ConfigError


def compile_language_model_layers(model: nn.Module) -> int:
    """Compile, in place, each decoder layer of `model.language_model`; how many."""
    import torch
    from transformers import AttentionInterface

    from ocelli.model.packed_attention import PACKED_SDPA, packed_sdpa_attention

    language_model = getattr(model, "language_model", None)
    layers = getattr(getattr(language_model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ConfigError(
            f"train.compile compiles the decoder layers of a model's language_model, and "
            f"{type(model).__name__} has none; set train.compile: false"
        )
    # Its loop over samples reads their lengths, which a compiled graph cannot.
    AttentionInterface.register(PACKED_SDPA, torch.compiler.disable(packed_sdpa_attention))
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers)
