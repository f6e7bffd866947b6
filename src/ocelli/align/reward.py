"""A reward model: the ocelli model with a scalar head on the last token.

Trained on preference pairs with the Bradley-Terry loss -log sigmoid(r(chosen) -
r(rejected)), the same pair batches DPO uses (chosen rows, then rejected rows), and
judged by its accuracy on held-out pairs: the share where r(chosen) > r(rejected).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ocelli.errors import CheckpointError

HEAD_FILE = "reward_head.safetensors"


class RewardModel(nn.Module):
    """forward(**pair batch) -> {"loss", "accuracy", "rewards"}; `score` for any batch."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        hidden = backbone.config.text_config.hidden_size
        self.head = nn.Linear(hidden, 1)
        # Start every reward at 0 so the first steps compare the pairs, not the head's noise.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def score(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One reward per row, read at its last real token (rows are right-padded)."""
        outputs = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            output_hidden_states=True,
            use_cache=False,
        )
        last = attention_mask.sum(dim=1) - 1
        hidden = outputs.hidden_states[-1][torch.arange(len(last)), last]
        return self.head(hidden.float()).squeeze(-1)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        **unused: Any,  # labels and token_weights of the pair batch: not needed here
    ) -> dict[str, torch.Tensor]:
        rewards = self.score(input_ids, attention_mask, pixel_values)
        chosen, rejected = rewards.chunk(2)
        return {
            "loss": -F.logsigmoid(chosen - rejected).mean(),
            "accuracy": (chosen > rejected).float().mean().detach(),
            "rewards": rewards.detach(),
        }

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> None:
        self.backbone.save_pretrained(directory, **kwargs)
        tensors = {
            name: value.detach().contiguous() for name, value in self.head.state_dict().items()
        }
        save_file(tensors, str(Path(directory) / HEAD_FILE))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> RewardModel:
        from ocelli.model import OcelliForConditionalGeneration

        head_file = Path(directory) / HEAD_FILE
        if not head_file.is_file():
            raise CheckpointError(
                f"{directory} has no {HEAD_FILE}: it is not a reward model; train one with "
                "ocelli.align.train_reward"
            )
        model = cls(OcelliForConditionalGeneration.from_pretrained(str(directory)))
        model.head.load_state_dict(load_file(str(head_file)))
        return model


@torch.no_grad()
def pair_accuracy(model: RewardModel, dataset: Any, collate: Any, batch_size: int = 8) -> float:
    """Share of pairs whose chosen answer gets the higher reward (ties count as wrong)."""
    was_training = model.training
    model.eval()
    right = 0
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        right += int(model(**collate(items))["accuracy"] * len(items) + 0.5)
    model.train(was_training)
    return right / len(dataset) if len(dataset) else 0.0
