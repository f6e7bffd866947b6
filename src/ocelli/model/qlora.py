"""QLoRA-style storage of the frozen language model: weight-only quantization with
dequantize-on-the-fly, LoRA adapters kept in float32 on top.

bitsandbytes does not run on these CPUs, so ocelli quantizes itself. Each `nn.Linear`
of the language model (not the output head, not embeddings or norms) becomes a
`QuantizedLinear`: its weight cut into blocks of `block_size` values, each block stored
as codes plus one float32 absmax scale.

- "nf4": 4-bit codes into 16 levels placed at quantiles of a normal distribution
  (the NormalFloat idea of the QLoRA paper: weights are roughly normal, so equal-mass
  levels waste none), with an exact zero; two codes per byte. 0.5625 bytes per weight
  with 64-value blocks (0.5 for codes + 4/64 for the scale), 7.1x less than float32.
- "int8": symmetric round-to-nearest into -127..127; 1.0625 bytes per weight.

Each forward dequantizes the weight into the input's dtype and calls `F.linear`, so the
matmul runs in float (the int8 CPU kernels of `quantize.py` are for inference only and
have no backward). The weight is a buffer: it never takes gradients. Not done here:
double quantization of the scales (a further 0.4 bits per weight in QLoRA) and paged
optimizers.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ocelli.errors import ConfigError

SCHEMES = ("nf4", "int8")


def normal_float_levels(bits: int = 4) -> torch.Tensor:
    """2**bits levels in [-1, 1] at normal quantiles, one more positive than negative so
    that 0 is a level (a zero weight, or a block's padding, stays exactly zero)."""
    count = 2**bits
    # the outermost quantile: midway between the tail masses of 2**bits and 2**bits - 1 bins
    edge = 1 - 0.5 * (1 / (2 * (count - 1)) + 1 / (2 * count))
    positive = torch.special.ndtri(torch.linspace(edge, 0.5, count // 2 + 1, dtype=torch.float64))
    negative = -torch.special.ndtri(torch.linspace(edge, 0.5, count // 2, dtype=torch.float64))
    levels = torch.cat([positive[:-1], negative[:-1], torch.zeros(1, dtype=torch.float64)])
    levels = levels.sort().values
    return (levels / levels.abs().max()).float()


NF4_LEVELS = normal_float_levels(4)


class QuantizedLinear(nn.Module):
    """A frozen linear layer whose weight is stored quantized (see the module docstring)."""

    def __init__(self, linear: nn.Linear, scheme: str = "nf4", block_size: int = 64) -> None:
        super().__init__()
        if scheme not in SCHEMES:
            raise ConfigError(f"quantization scheme {scheme!r} is unknown; use one of {SCHEMES}")
        if block_size < 2 or block_size % 2:
            raise ConfigError(f"block_size must be an even number >= 2, got {block_size}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.scheme, self.block_size = scheme, block_size
        weight = linear.weight.detach().float()
        codes, scales = quantize_blockwise(weight, scheme, block_size)
        self.register_buffer("codes", codes)
        self.register_buffer("scales", scales)
        self.register_buffer("levels", NF4_LEVELS.clone() if scheme == "nf4" else None)
        bias = linear.bias
        self.bias = (
            None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        )

    def dequantized_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        weight = dequantize_blockwise(
            self.codes, self.scales, self.levels, self.out_features * self.in_features
        ).reshape(self.out_features, self.in_features)
        return weight if dtype is None else weight.to(dtype)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(inputs.dtype)
        return F.linear(inputs, self.dequantized_weight(inputs.dtype), bias)

    def to_linear(self) -> nn.Linear:
        """A float32 nn.Linear holding the dequantized weight."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        linear = linear.to(self.scales.device)
        with torch.no_grad():
            linear.weight.copy_(self.dequantized_weight(torch.float32))
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"scheme={self.scheme}, block_size={self.block_size}"
        )


def quantize_blockwise(
    weight: torch.Tensor, scheme: str, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat weight -> (codes as uint8 or int8, one absmax scale per block)."""
    flat = weight.reshape(-1)
    padding = -len(flat) % block_size
    blocks = F.pad(flat, (0, padding)).reshape(-1, block_size)
    scales = blocks.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    normalised = blocks / scales[:, None]
    if scheme == "int8":
        return torch.round(normalised * 127).to(torch.int8).reshape(-1), scales
    # nearest level: bucketize against the midpoints between consecutive levels
    midpoints = (NF4_LEVELS[1:] + NF4_LEVELS[:-1]) / 2
    codes = torch.bucketize(normalised.reshape(-1), midpoints).to(torch.uint8)
    return codes[0::2] << 4 | codes[1::2], scales


def dequantize_blockwise(
    codes: torch.Tensor, scales: torch.Tensor, levels: torch.Tensor | None, numel: int
) -> torch.Tensor:
    if levels is None:  # int8
        values = codes.reshape(len(scales), -1).float() / 127
    else:
        unpacked = torch.stack([codes >> 4, codes & 0x0F], dim=1).reshape(-1).long()
        values = levels[unpacked].reshape(len(scales), -1)
    return (values * scales[:, None].float()).reshape(-1)[:numel]


def quantize_language_model(
    model: nn.Module, scheme: str = "nf4", block_size: int = 64
) -> list[str]:
    """Replace the language model's linear layers (LoRA's base layers included, the
    output head excluded) by QuantizedLinear, in place; returns their names."""
    language_model = _language_model(model)
    head = language_model.get_output_embeddings()
    replaced = []
    for name, module in list(language_model.named_modules()):
        if any(part.startswith("lora_") for part in name.split(".")):
            continue  # LoRA's own adapters stay float32 and trainable
        for child_name, child in list(module.named_children()):
            if type(child) is nn.Linear and child is not head:
                setattr(module, child_name, QuantizedLinear(child, scheme, block_size))
                replaced.append(f"{name}.{child_name}" if name else child_name)
    if not replaced:
        raise ConfigError("the language model has no nn.Linear layers to quantize")
    return replaced


def dequantize_language_model(model: nn.Module) -> int:
    """Put float32 nn.Linear layers (dequantized weights) back; returns how many."""
    count = 0
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, QuantizedLinear):
                setattr(module, child_name, child.to_linear())
                count += 1
    return count


def is_quantized(model: nn.Module) -> bool:
    return any(isinstance(module, QuantizedLinear) for module in model.modules())


def frozen_bytes(module: nn.Module) -> int:
    """Bytes of a module's frozen state: parameters without gradients and buffers."""
    parameters = sum(
        p.numel() * p.element_size() for p in module.parameters() if not p.requires_grad
    )
    return parameters + sum(b.numel() * b.element_size() for b in module.buffers())


def _language_model(model: nn.Module) -> nn.Module:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    language_model = getattr(base, "language_model", None)
    if language_model is None:
        raise ConfigError(
            f"{type(base).__name__} has no language_model to quantize; pass an ocelli model"
        )
    return language_model
