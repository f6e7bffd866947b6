"""`train.compile`: torch.compile on the block a training step repeats, the LM's layers.

Each decoder layer of the model's language model is compiled (inductor; dynamic shapes,
so batches and packed rows of any length reuse one graph); the vision tower, connector,
image merge and loss stay eager, as does the per-sample attention of packed rows (a
Python loop over the samples, which the compiled layers call out to). On one CPU thread
the perf_packing model's packed step took the same time compiled as eager (0.92 s), its
padded step about 4% less, after a one-off compile of about 20 s (one to two minutes on
a loaded machine): off by default, worth a measurement before a long run.
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
