"""Policy optimisation against a reward with a KL penalty to the frozen SFT model
(GRPO, Shao et al. 2024; RLOO, Ahmadian et al. 2024), on ocelli's training loop.

Each step takes a batch of prompts, samples `group_size` answers to each from the
current policy, scores them with a reward (ocelli.align.rewards) and turns the scores
into advantages relative to the other answers of the same prompt:
  grpo  A_i = (r_i - mean(r)) / (std(r) + 1e-4)   (std unbiased, as TRL's GRPOTrainer)
  rloo  A_i = r_i - mean of the group's other rewards
The loss on the response tokens t of answer i, as in TRL's GRPO with one update per
generation (the importance ratio is 1, so PPO's clipping never acts):
  l_it = -exp(log pi_t - sg[log pi_t]) * A_i + kl_coef * KL_t,
  KL_t = exp(log ref_t - log pi_t) - (log ref_t - log pi_t) - 1  (k3 estimator, >= 0)
averaged over all response tokens of the batch (`aggregation="token"`, TRL's
default "dapo" on one process) or per answer, then over answers ("sequence", TRL's
"grpo"). Answers are re-tokenised through the chat template, the same rows SFT and
DPO train on, so the prompt and image tokens never carry loss.

`RLModel` is a module whose forward(prompt_index) samples, scores and returns the loss:
the loop's optimiser, checkpoints and resume work unchanged, and the reference and the
reward stay outside the module tree so only the policy is trained and saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ocelli.align.batches import row_logits, token_log_probs
from ocelli.align.dpo import check_same_architecture
from ocelli.align.rewards import PROMPT_KINDS, Reward, RLPrompt
from ocelli.data.processing import IGNORE_INDEX
from ocelli.errors import ConfigError

ADVANTAGES = ("grpo", "rloo")
AGGREGATIONS = ("token", "sequence")


@dataclass
class RLConfig:
    group_size: int = 4  # answers sampled per prompt (k)
    kl_coef: float = 0.04  # weight of the per-token KL to the reference (TRL's beta)
    advantage: str = "grpo"  # grpo or rloo
    aggregation: str = "token"  # token (mean over the batch's response tokens) or sequence
    temperature: float = 1.0
    max_new_tokens: int = 48
    kinds: list[str] = field(default_factory=lambda: list(PROMPT_KINDS))  # vqa, describe
    num_prompts: int | None = None  # a seeded sample of the world's prompts; None: all

    def __post_init__(self) -> None:
        checks = [
            (self.group_size >= 2, f"group_size must be at least 2 (answers compared per "
             f"prompt), got {self.group_size}"),
            (self.kl_coef >= 0, f"kl_coef must be 0 or more, got {self.kl_coef}"),
            (self.advantage in ADVANTAGES, f"unknown advantage {self.advantage!r}; choose "
             f"from {', '.join(ADVANTAGES)}"),
            (self.aggregation in AGGREGATIONS, f"unknown aggregation {self.aggregation!r}; "
             f"choose from {', '.join(AGGREGATIONS)}"),
            (self.temperature > 0, f"temperature must be positive (answers are sampled), "
             f"got {self.temperature}"),
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (self.num_prompts is None or self.num_prompts >= 1,
             f"num_prompts must be >= 1, got {self.num_prompts}"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


def group_advantages(rewards: torch.Tensor, group_size: int, method: str = "grpo") -> torch.Tensor:
    """Advantages of rewards laid out prompt by prompt (group_size answers each)."""
    if group_size < 2 or rewards.numel() % group_size:
        raise ConfigError(
            f"{rewards.numel()} rewards cannot form groups of {group_size} (need >= 2 each)"
        )
    groups = rewards.float().view(-1, group_size)
    mean = groups.mean(dim=1, keepdim=True)
    if method == "grpo":
        return ((groups - mean) / (groups.std(dim=1, keepdim=True) + 1e-4)).flatten()
    if method == "rloo":
        others = (groups.sum(dim=1, keepdim=True) - groups) / (group_size - 1)
        return (groups - others).flatten()
    raise ConfigError(f"unknown advantage {method!r}; choose from {', '.join(ADVANTAGES)}")


def per_token_kl(policy_log_probs: torch.Tensor, ref_log_probs: torch.Tensor) -> torch.Tensor:
    """The k3 estimate of KL(policy || reference) at each sampled token."""
    delta = ref_log_probs - policy_log_probs
    return torch.exp(delta) - delta - 1


def policy_loss(
    policy_log_probs: torch.Tensor,
    ref_log_probs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    aggregation: str = "token",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss and the mean per-token KL over the response tokens (`mask`), from
    per-token log-probabilities (rows, T) and one advantage per row."""
    mask = mask.float()
    ratio = torch.exp(policy_log_probs - policy_log_probs.detach())
    kl = per_token_kl(policy_log_probs, ref_log_probs)
    per_token = -ratio * advantages.unsqueeze(1) + kl_coef * kl
    mean_kl = (kl * mask).sum() / mask.sum().clamp(min=1)
    if aggregation == "token":
        return (per_token * mask).sum() / mask.sum().clamp(min=1), mean_kl.detach()
    if aggregation == "sequence":
        per_row = (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        return per_row.mean(), mean_kl.detach()
    raise ConfigError(f"unknown aggregation {aggregation!r}; choose from {', '.join(AGGREGATIONS)}")


class PromptIndices(torch.utils.data.Dataset):
    """The loop's dataset: prompt numbers (the prompts themselves live in RLModel)."""

    def __init__(self, num_prompts: int) -> None:
        self.num_prompts = num_prompts

    def __len__(self) -> int:
        return self.num_prompts

    def __getitem__(self, index: int) -> int:
        return index


def collate_prompt_indices(items: Sequence[int]) -> dict[str, torch.Tensor]:
    return {"prompt_index": torch.as_tensor(list(items), dtype=torch.long)}


class RLModel(nn.Module):
    """The trainable policy; forward(prompt_index) -> {"loss", "reward_mean", "kl", ...}."""

    def __init__(
        self,
        policy: nn.Module,
        reference: nn.Module,
        processor: Any,
        reward: Reward,
        prompts: Sequence[RLPrompt],
        config: RLConfig,
    ) -> None:
        super().__init__()
        check_same_architecture(policy, reference)
        self.policy, self.config = policy, config
        self.processor, self.prompts = processor, list(prompts)
        reference.eval().requires_grad_(False)
        # Tuples: neither is registered as a submodule, so neither is trained or saved.
        self._frozen = (reference, reward)
        self._pixels: dict[str, torch.Tensor] = {}
        self.last_stats: dict[str, float] = {}

    @property
    def reference(self) -> nn.Module:
        return self._frozen[0]

    @property
    def reward(self) -> Reward:
        return self._frozen[1]

    def forward(self, prompt_index: torch.Tensor) -> dict[str, torch.Tensor]:
        device = next(self.policy.parameters()).device
        self._follow(device)
        group = self.config.group_size
        prompts = [self.prompts[i] for i in prompt_index.tolist() for _ in range(group)]
        responses = self.sample(prompts)
        rewards = torch.tensor(self.reward(prompts, responses), dtype=torch.float32)
        advantages = group_advantages(rewards, group, self.config.advantage).to(device)
        batch = self.rows(prompts, responses, device)
        policy_lp, mask = token_log_probs(row_logits(self.policy, batch), batch["labels"])
        with torch.no_grad():
            ref_lp, _ = token_log_probs(row_logits(self.reference, batch), batch["labels"])
        loss, kl = policy_loss(
            policy_lp, ref_lp, advantages, mask, self.config.kl_coef, self.config.aggregation
        )
        self.last_stats = {
            "reward_mean": rewards.mean().item(),
            "reward_std": rewards.std().item(),
            "kl": kl.item(),
            "response_tokens": mask.sum(dim=1).float().mean().item(),
        }
        return {"loss": loss, "kl": kl, "reward_mean": rewards.mean()}

    def _follow(self, device: torch.device) -> None:
        if next(self.reference.parameters()).device != device:
            self.reference.to(device)
        if hasattr(self.reward, "to"):
            self.reward.to(device)

    @torch.no_grad()
    def sample(self, prompts: Sequence[RLPrompt]) -> list[str]:
        """One sampled answer per prompt from the current policy (dropout off). Sampling
        draws from torch's global generator, which the loop's checkpoints restore, so a
        resumed run samples what the uninterrupted one would have."""
        from ocelli.generate.pipeline import OcelliPipeline

        was_training = self.policy.training
        try:
            pipeline = OcelliPipeline(self.policy, self.processor)  # sets eval mode
            return pipeline.chat_batch(
                [[p.image] for p in prompts],
                [p.prompt for p in prompts],
                do_sample=True,
                temperature=self.config.temperature,
                max_new_tokens=self.config.max_new_tokens,
            )
        finally:
            self.policy.train(was_training)

    def rows(
        self, prompts: Sequence[RLPrompt], responses: Sequence[str], device: torch.device
    ) -> dict[str, torch.Tensor]:
        """Right-padded conversations ending with each response, labels on its tokens."""
        encoded = [
            self.processor.encode_conversation(p.messages(r), 1)
            for p, r in zip(prompts, responses, strict=True)
        ]
        batch = self.processor.pad([row["input_ids"] for row in encoded], padding_side="right")
        labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
        for index, row in enumerate(encoded):
            labels[index, : len(row["labels"])] = torch.as_tensor(row["labels"])
        pixels = torch.cat([self._image(p.image) for p in prompts])
        dtype = next(self.policy.parameters()).dtype
        return {
            "input_ids": batch["input_ids"].to(device),
            "attention_mask": batch["attention_mask"].to(device),
            "labels": labels.to(device),
            "pixel_values": pixels.to(device, dtype),
        }

    def _image(self, path: str) -> torch.Tensor:
        pixels = self._pixels.get(path)
        if pixels is None:  # the world's images are small: decode each once
            from ocelli.data.images import load_image

            pixels = self._pixels[path] = self.processor.image_processor([load_image(path)])
        return pixels

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> None:
        self.policy.save_pretrained(directory, **kwargs)
