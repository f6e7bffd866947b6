"""Logits processors for generation. Visual Contrastive Decoding (Leng et al. 2023):

    logits_cd = (1 + alpha) * logits(y | image, x) - alpha * logits(y | noised image, x)

where the noised image is the diffusion forward process q(x_t | x_0) at step t of a
linear beta schedule, and an adaptive plausibility cut-off keeps only the tokens whose
probability under the real image is at least beta times the most likely one's. Tokens
the model would say without looking (they survive the noise) are pushed down.

The two passes run as one batch of twice the size: rows B..2B hold the same prompts
with the noised images, and `VCDLogitsProcessor` writes the contrasted scores into both
halves, so both pick the same token and stay in step. For sampling it draws the token
itself and hands generate a one-hot distribution, since two independent draws would
let the halves drift apart.

    vcd_generate(model, batch, VCDConfig(alpha=1.0, beta=0.1, noise_step=500))
    pipeline.chat(image, question, vcd=VCDConfig())
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from ocelli.errors import ConfigError, PromptError


@dataclass(frozen=True)
class VCDConfig:
    """alpha: contrast strength (0 is plain decoding); beta: plausibility cut-off in
    [0, 1]; noise_step of num_steps on a linear beta schedule from beta_start to
    beta_end (DDPM's defaults; the paper's t=500 of T=1000 leaves little of the image)."""

    alpha: float = 1.0
    beta: float = 0.1
    noise_step: int = 500
    num_steps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not (math.isfinite(self.alpha) and self.alpha >= 0):
            problems.append(f"alpha must be a number >= 0, got {self.alpha}")
        if not 0.0 <= self.beta <= 1.0:
            problems.append(f"beta must lie in [0, 1], got {self.beta}")
        if not 0 <= self.noise_step < self.num_steps:
            problems.append(
                f"noise_step must lie in [0, num_steps={self.num_steps}), got {self.noise_step}"
            )
        if not 0.0 < self.beta_start <= self.beta_end < 1.0:
            problems.append(
                f"need 0 < beta_start <= beta_end < 1, got {self.beta_start}, {self.beta_end}"
            )
        if problems:
            raise ConfigError("invalid VCD settings: " + "; ".join(problems))

    def signal_level(self) -> float:
        """sqrt(alpha_bar_t): how much of the image is left at the noise step."""
        betas = torch.linspace(self.beta_start, self.beta_end, self.num_steps, dtype=torch.float64)
        alpha_bar = torch.cumprod(1.0 - betas, dim=0)[self.noise_step]
        return float(alpha_bar.sqrt())


def diffusion_noise(pixel_values: torch.Tensor, config: VCDConfig) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps, with seeded noise (the
    same image and seed always give the same noised image)."""
    signal = config.signal_level()
    generator = torch.Generator().manual_seed(config.seed)
    noise = torch.randn(pixel_values.shape, generator=generator, dtype=torch.float32)
    noise = noise.to(device=pixel_values.device, dtype=pixel_values.dtype)
    return signal * pixel_values + math.sqrt(1.0 - signal**2) * noise


def contrastive_logits(
    original: torch.Tensor, noised: torch.Tensor, alpha: float, beta: float
) -> torch.Tensor:
    """(1 + alpha) * original - alpha * noised, with tokens below the plausibility
    cut-off (p < beta * max p under `original`) set to -inf."""
    log_probs = torch.log_softmax(original.float(), dim=-1)
    cutoff = log_probs.max(dim=-1, keepdim=True).values + math.log(beta) if beta > 0 else None
    # Tokens another processor already ruled out (-inf) stay out; they must not turn
    # into nan or +inf through the difference.
    noised = torch.where(torch.isfinite(noised), noised, original)
    contrasted = (1 + alpha) * original.float() - alpha * noised.float()
    implausible = ~torch.isfinite(original)
    if cutoff is not None:
        implausible |= log_probs < cutoff
    return contrasted.masked_fill(implausible, float("-inf"))


class VCDLogitsProcessor(LogitsProcessor):
    """Contrasts the first half of a doubled batch with the second (noised) half."""

    def __init__(self, alpha: float, beta: float, sample: bool = False) -> None:
        self.alpha, self.beta, self.sample = alpha, beta, sample

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] % 2:
            raise PromptError("VCD expects a doubled batch (original rows, then noised rows)")
        original, noised = scores.chunk(2)
        contrasted = contrastive_logits(original, noised, self.alpha, self.beta)
        if self.sample:
            # torch's global generator: seeded per call by the pipeline's `seed`.
            tokens = torch.multinomial(torch.softmax(contrasted, dim=-1), 1)
            contrasted = torch.full_like(contrasted, float("-inf"))
            contrasted.scatter_(-1, tokens, 0.0)
        return torch.cat([contrasted, contrasted]).to(scores.dtype)


def vcd_generate(
    model: Any, batch: dict[str, torch.Tensor], config: VCDConfig, **generate_kwargs: Any
) -> torch.Tensor:
    """`model.generate` with VCD; returns the sequences of the B original rows."""
    if batch.get("pixel_values") is None:
        raise PromptError("VCD contrasts the image with a noised copy; give at least one image")
    if generate_kwargs.get("num_beams", 1) != 1:
        raise ConfigError("VCD works with greedy decoding or sampling, not beam search")
    size = batch["input_ids"].shape[0]
    doubled = {
        name: torch.cat([value, value])
        for name, value in batch.items()
        if name in ("input_ids", "attention_mask")
    }
    pixels = batch["pixel_values"]
    doubled["pixel_values"] = torch.cat([pixels, diffusion_noise(pixels, config)])
    sample = bool(generate_kwargs.get("do_sample", False))
    processor = VCDLogitsProcessor(config.alpha, config.beta, sample)
    processors = LogitsProcessorList(generate_kwargs.pop("logits_processor", None) or [])
    processors.append(processor)
    output = model.generate(**doubled, logits_processor=processors, **generate_kwargs)
    sequences = output if isinstance(output, torch.Tensor) else output.sequences
    return sequences[:size]
