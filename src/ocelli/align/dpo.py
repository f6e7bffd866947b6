"""Direct preference optimisation against an explicit frozen reference model.

DPO (Rafailov et al. 2023), `loss="sigmoid"`:
    loss = -log sigmoid(beta * ((log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))))
IPO (Azar et al. 2023), `loss="ipo"`: the squared distance of the same log-ratio gap
from 1 / (2 beta), with each side's log-ratio divided by its number of response tokens
(TRL's normalisation, which its authors confirmed; tests pin both to TRL's code).

With `sft_weight` > 0 the loss also holds that much of the SFT loss on the chosen
responses (the mean negative log-likelihood of their tokens): RPO (Pang et al. 2024),
TRL's `rpo_alpha`, now its `loss_type=["sigmoid", "sft"]` with `loss_weights=[1,
sft_weight]`. It keeps the likelihood of the right answers from falling while their
margin over the wrong ones grows, which plain DPO allows.

Log-probabilities are summed over response tokens only (the processor's labels). With
`segment_weight` > 1, tokens inside the changed spans count that many times (RLHF-V's
dense, segment-level preference). Training reuses ocelli's loop: `DPOModel` is a module
whose forward returns the loss, and the final directory is a normal ocelli model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ocelli.align.batches import row_logits, score_rows, sequence_log_probs
from ocelli.errors import CheckpointError, ConfigError

LOSSES = ("sigmoid", "ipo")


def preference_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    loss: str = "sigmoid",
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean DPO or IPO loss over a batch of sequence log-probabilities (B,) each."""
    chosen_ratio = policy_chosen - ref_chosen
    rejected_ratio = policy_rejected - ref_rejected
    if loss == "sigmoid":
        return -F.logsigmoid(beta * (chosen_ratio - rejected_ratio)).mean()
    if loss == "ipo":
        if chosen_lengths is None or rejected_lengths is None:
            raise ConfigError("the ipo loss needs the response lengths of both sides")
        gap = chosen_ratio / chosen_lengths.clamp(min=1) - rejected_ratio / rejected_lengths.clamp(
            min=1
        )
        return ((gap - 1 / (2 * beta)) ** 2).mean()
    raise ConfigError(f"unknown preference loss {loss!r}; choose from {', '.join(LOSSES)}")


def sft_loss(chosen_log_probs: torch.Tensor, chosen_lengths: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood per chosen response token over the whole batch, from
    each chosen row's summed (unweighted) log-probability and its number of tokens."""
    return -chosen_log_probs.sum() / chosen_lengths.sum().clamp(min=1)


@dataclass
class DPOConfig:
    beta: float = 0.1
    loss: str = "sigmoid"
    segment_weight: float = 1.0  # weight of tokens in the changed spans (RLHF-V uses 5)
    sft_weight: float = 0.0  # weight of the SFT loss on the chosen responses (TRL's rpo_alpha)

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(
                f"unknown preference loss {self.loss!r}; choose from {', '.join(LOSSES)}"
            )
        if not self.beta > 0:
            raise ConfigError(f"beta must be positive, got {self.beta}")
        if not self.segment_weight > 0:
            raise ConfigError(f"segment_weight must be positive, got {self.segment_weight}")
        if not self.sft_weight >= 0:
            raise ConfigError(f"sft_weight must be 0 or more, got {self.sft_weight}")


def check_same_architecture(policy: nn.Module, reference: nn.Module) -> None:
    """The reference must score the same tokens the same way: same model type, same
    vocabulary, same image tokens."""
    fields = ("model_type", "image_token_id", "num_image_tokens")
    for name in fields:
        mine, theirs = getattr(policy.config, name, None), getattr(reference.config, name, None)
        if mine != theirs:
            raise CheckpointError(
                f"the reference model's {name} is {theirs!r} but the policy's is {mine!r}; "
                "use the SFT checkpoint the policy starts from as the reference"
            )
    sizes = [m.get_input_embeddings().num_embeddings for m in (policy, reference)]
    if sizes[0] != sizes[1]:
        raise CheckpointError(
            f"the reference model has {sizes[1]} token embeddings but the policy {sizes[0]}; "
            "they must share one tokenizer"
        )


class DPOModel(nn.Module):
    """The trainable policy and a frozen reference; forward(**pair batch) -> loss.

    The reference is kept out of the module tree, so optimisers, checkpoints and
    `state_dict` only ever see the policy, and `save_pretrained` writes the policy alone.
    """

    def __init__(self, policy: nn.Module, reference: nn.Module, config: DPOConfig) -> None:
        super().__init__()
        check_same_architecture(policy, reference)
        self.policy, self.config = policy, config
        reference.eval().requires_grad_(False)
        self._reference = (reference,)  # a tuple: not registered as a submodule

    @property
    def reference(self) -> nn.Module:
        return self._reference[0]

    def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
        reference = self.reference
        device = batch["input_ids"].device
        if next(reference.parameters()).device != device:
            reference.to(device)
        logits = row_logits(self.policy, batch)
        policy_scores, lengths = sequence_log_probs(
            logits, batch["labels"], batch.get("token_weights")
        )
        with torch.no_grad():
            ref_scores, _ = score_rows(reference, batch)
        policy_chosen, policy_rejected = policy_scores.chunk(2)
        ref_chosen, ref_rejected = ref_scores.chunk(2)
        chosen_lengths, rejected_lengths = lengths.chunk(2)
        loss = preference_loss(
            policy_chosen,
            policy_rejected,
            ref_chosen,
            ref_rejected,
            self.config.beta,
            self.config.loss,
            chosen_lengths,
            rejected_lengths,
        )
        outputs = {}
        if self.config.sft_weight > 0:
            plain, _ = sequence_log_probs(logits, batch["labels"])
            sft = sft_loss(plain.chunk(2)[0], chosen_lengths)
            loss = loss + self.config.sft_weight * sft
            outputs["sft_loss"] = sft.detach()
        margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
        return {"loss": loss, "reward_margin": self.config.beta * margin.detach(), **outputs}

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> None:
        self.policy.save_pretrained(directory, **kwargs)


def frozen_copy(model: nn.Module) -> nn.Module:
    """An independent frozen copy of `model`: the usual DPO reference (the SFT model)."""
    return copy.deepcopy(model).eval().requires_grad_(False)


@torch.no_grad()
def preference_margins(
    model: nn.Module, dataset: Any, collate: Any, batch_size: int = 8
) -> torch.Tensor:
    """log p(chosen) - log p(rejected) of each pair under `model` (summed over response
    tokens): the quantity DPO pushes up."""
    was_training = model.training
    model.eval()
    margins = []
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        scores, _ = score_rows(model, batch, weighted=False)
        chosen, rejected = scores.chunk(2)
        margins.append(chosen - rejected)
    model.train(was_training)
    return torch.cat(margins)
