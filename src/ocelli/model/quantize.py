"""int8 dynamic quantization for CPU inference.

`quantize_for_cpu` swaps the language model's `nn.Linear` layers (and, optionally, the
vision tower's) for PyTorch's dynamically quantized ones: weights stored as int8 with
one scale per output channel, activations quantized on the fly per call, matmuls in
int8 (fbgemm/x86 kernels).
Embeddings, norms, the connector and everything not an `nn.Linear` stay float32;
that includes the experts of transformers' mixture-of-experts LMs, which hold their
weights as fused tensors rather than `nn.Linear` modules.

The quantized model is for inference only (`generate`, forward): it cannot be trained
or saved with `save_pretrained`. Quantize after loading the float checkpoint.

This uses `torch.ao.quantization.quantize_dynamic`, which PyTorch deprecates in favour
of the separate torchao package; it still works in torch 2.13 and needs nothing
beyond torch, so its deprecation warnings are silenced here.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.ao.quantization import per_channel_dynamic_qconfig

from ocelli.errors import ConfigError


def quantize_for_cpu(model: nn.Module, *, vision: bool = False, inplace: bool = False) -> nn.Module:
    """An int8 dynamic-quantized copy of an `OcelliForConditionalGeneration` (the model
    itself with `inplace=True`), in eval mode. `vision=True` quantizes the vision
    tower's linear layers too (ViT encoders; a ConvNeXt has mostly convolutions)."""
    _check_quantizable(model)
    model.connector.bind_images(None)  # no image context from a previous call in the copy
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    parts = [model.language_model]
    if vision and model.vision_tower is not None:
        parts.append(model.vision_tower)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*deprecated.*", category=UserWarning)
        for part in parts:
            torch.ao.quantization.quantize_dynamic(
                part, {nn.Linear: per_channel_dynamic_qconfig}, inplace=True
            )
    return model


def _check_quantizable(model: nn.Module) -> None:
    engines = [name for name in torch.backends.quantized.supported_engines if name != "none"]
    if not engines:
        raise ConfigError(
            "this PyTorch build has no quantized CPU engine (fbgemm, x86 or qnnpack); "
            "run the float model instead"
        )
    for name, parameter in model.named_parameters():
        if parameter.device.type != "cpu" or parameter.dtype != torch.float32:
            raise ConfigError(
                f"quantize_for_cpu needs a float32 model on the CPU; {name} is "
                f"{parameter.dtype} on {parameter.device}; call model.float().cpu() first"
            )
