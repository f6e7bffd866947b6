"""Preference pairs as model inputs: tokenised chosen/rejected conversations, the
response-only label mask, per-token segment weights and paired batches.

A batch holds 2B rows, the B chosen conversations first and then the B rejected ones
(each with its image), so one forward pass scores both sides; the losses split it with
`chunk(2)`, the same layout TRL uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ocelli.align.pairs import PreferencePair, Span
from ocelli.data.processing import IGNORE_INDEX, OcelliProcessor
from ocelli.errors import ConfigError, PromptError


def token_weights(
    processor: OcelliProcessor,
    response: str,
    labels: list[int],
    spans: Sequence[Span],
    segment_weight: float,
) -> list[float]:
    """A weight per label position: `segment_weight` on response tokens that overlap a
    changed span, 1 on the other response tokens (the closing token too), 0 elsewhere."""
    weights = [0.0 if label == IGNORE_INDEX else 1.0 for label in labels]
    if segment_weight == 1.0 or not spans:
        return weights
    encoded = processor.tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
    first = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
    ids = encoded["input_ids"]
    if labels[first : first + len(ids)] != ids:
        raise ConfigError(
            "the tokenizer splits a response differently inside the chat template than on "
            "its own, so changed spans cannot be mapped to tokens; use segment_weight=1"
        )
    for index, (start, end) in enumerate(encoded["offset_mapping"]):
        # An empty span (an insertion point) marks the token right after it.
        if any(
            start < s_end and s_start < end or start == s_start == s_end for s_start, s_end in spans
        ):
            weights[first + index] = segment_weight
    return weights


class PreferenceDataset(torch.utils.data.Dataset):
    """Tokenised pairs; images are decoded once and cached (the world's are small)."""

    def __init__(
        self,
        pairs: Sequence[PreferencePair],
        processor: OcelliProcessor,
        segment_weight: float = 1.0,
    ) -> None:
        if segment_weight <= 0:
            raise ConfigError(f"segment_weight must be positive, got {segment_weight}")
        self.pairs, self.processor = list(pairs), processor
        self.encoded = [self._encode(pair, segment_weight) for pair in self.pairs]
        self._pixels: dict[str, torch.Tensor] = {}

    def _encode(self, pair: PreferencePair, segment_weight: float) -> dict[str, Any]:
        sides = {}
        for side, text, spans in (
            ("chosen", pair.chosen, pair.chosen_spans),
            ("rejected", pair.rejected, pair.rejected_spans),
        ):
            try:
                encoded = self.processor.encode_conversation(pair.messages(text), 1)
            except PromptError as exc:
                raise PromptError(f"pair {pair.id}, {side}: {exc}") from None
            weights = token_weights(self.processor, text, encoded["labels"], spans, segment_weight)
            sides[side] = {**encoded, "weights": weights}
        return sides

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pair = self.pairs[index]
        pixels = self._pixels.get(pair.image)
        if pixels is None:
            from ocelli.data.images import load_image

            pixels = self.processor.image_processor([load_image(pair.image)])
            self._pixels[pair.image] = pixels
        return {**self.encoded[index], "pixel_values": pixels}


class PairCollator:
    """Right-pads a list of pairs into one 2B-row batch: chosen rows, then rejected."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [item["chosen"] for item in items] + [item["rejected"] for item in items]
        longest = max(len(row["input_ids"]) for row in rows)
        shape = (len(rows), longest)
        input_ids = torch.full(shape, self.pad_token_id, dtype=torch.long)
        labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
        weights = torch.zeros(shape, dtype=torch.float32)
        attention_mask = torch.zeros(shape, dtype=torch.long)
        for index, row in enumerate(rows):
            length = len(row["input_ids"])
            input_ids[index, :length] = torch.as_tensor(row["input_ids"])
            labels[index, :length] = torch.as_tensor(row["labels"])
            weights[index, :length] = torch.as_tensor(row["weights"])
            attention_mask[index, :length] = 1
        pixels = torch.cat([item["pixel_values"] for item in items])
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            "token_weights": weights,
            "pixel_values": torch.cat([pixels, pixels]),
        }


def token_log_probs(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of each next token (B, T - 1) and the mask of labelled ones.
    Logits at t predict the token at t + 1."""
    targets = labels[:, 1:]
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    per_token = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return per_token, targets != IGNORE_INDEX


def sequence_log_probs(
    logits: torch.Tensor, labels: torch.Tensor, token_weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed (optionally weighted) log-probabilities of the labelled tokens of each row,
    and the number of labelled tokens per row."""
    per_token, mask = token_log_probs(logits, labels)
    weights = mask.float() if token_weights is None else token_weights[:, 1:] * mask
    return (per_token * weights).sum(dim=1), mask.sum(dim=1)


def row_logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits of every row of a batch (labels and token weights are not model inputs)."""
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "token_weights")}
    return model(**inputs, use_cache=False).logits


def score_rows(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], weighted: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """`sequence_log_probs` of every row of a pair batch under `model`."""
    weights = batch.get("token_weights") if weighted else None
    return sequence_log_probs(row_logits(model, batch), batch["labels"], weights)
