"""Choosing each sequence's next token from its logits, one row of a batch at a time.

Every sequence has its own settings and its own random generator, seeded from the
request's `seed`, so a seeded request samples the same tokens whichever requests it
happens to share a batch with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

# Below this a temperature is greedy decoding: dividing float32 logits by it would
# overflow, and the distribution is one-hot to within float precision anyway.
GREEDY_TEMPERATURE = 1e-4


@dataclass(frozen=True)
class SamplingParams:
    """How one sequence is decoded. temperature 0 (or below GREEDY_TEMPERATURE) is greedy."""

    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False

    @property
    def greedy(self) -> bool:
        return self.temperature < GREEDY_TEMPERATURE

    def generator(self) -> torch.Generator | None:
        """The random stream of one sequence; None for greedy decoding."""
        if self.greedy:
            return None
        generator = torch.Generator()
        if self.seed is None:
            generator.seed()
        else:
            generator.manual_seed(self.seed)
        return generator


def next_tokens(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    generators: Sequence[torch.Generator | None],
) -> list[int]:
    """The next token of each row of `logits` (batch, vocab)."""
    chosen = logits.argmax(dim=-1).tolist()
    for row, (settings, generator) in enumerate(zip(params, generators, strict=True)):
        if not settings.greedy:
            chosen[row] = _sample(logits[row], settings, generator)
    return chosen


def _sample(logits: torch.Tensor, settings: SamplingParams, generator: torch.Generator) -> int:
    logits = logits.float().cpu()
    # Shifted so the largest logit is 0: a tiny temperature then gives -inf, not inf - inf.
    probs = torch.softmax((logits - logits.max()) / settings.temperature, dim=-1)
    if settings.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest set whose mass reaches top_p; the likeliest token always stays.
        mass_before = sorted_probs.cumsum(-1) - sorted_probs
        sorted_probs[mass_before >= settings.top_p] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))
