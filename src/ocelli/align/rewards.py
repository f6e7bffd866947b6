"""Rewards for reinforcement learning, behind one interface, and the prompts they judge.

A reward maps (prompt, response) pairs to one float each. Two sources:
  world        verifiable: the world's scene graph. A question's answer is checked
               exactly (ocelli.eval.world_vqa.is_correct: 1 or 0); a description gets
               the F1 of its claim precision and fact recall from the exact claim
               scorer (ocelli.eval.metrics.claims), the score `sampled_pairs` ranks by.
  model:DIR    learned: a Bradley-Terry reward model (`ocelli align reward`), which
               reads the conversation with its own processor.

Prompts come from a world split (the training one): its English questions and its
detailed-description requests, each with what the world knows about its image.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from ocelli.errors import CheckpointError, ConfigError, DataError

PROMPT_KINDS = ("vqa", "describe")


@dataclass(frozen=True)
class RLPrompt:
    """One prompt to sample answers for, with what the world knows about its image."""

    id: str
    image: str
    prompt: str
    kind: str  # "vqa" or "describe"
    image_id: str
    answer: str = ""  # vqa: the canonical answer
    question_type: str = ""  # vqa: the question's type (reasoning is scored on its verdict)

    def messages(self, response: str) -> list[dict[str, str]]:
        """The conversation in ocelli's chat form, ending with `response`."""
        return [
            {"role": "user", "content": f"<image>\n{self.prompt}"},
            {"role": "assistant", "content": response},
        ]


def world_prompts(
    world_dir: str | Path,
    kinds: Sequence[str] = PROMPT_KINDS,
    limit: int | None = None,
    seed: int = 0,
) -> list[RLPrompt]:
    """The English prompts of a world split; `limit` keeps a seeded sample of that many."""
    from ocelli.world.loading import load_conversations, load_questions

    unknown = [kind for kind in kinds if kind not in PROMPT_KINDS]
    if unknown or not kinds:
        raise ConfigError(
            f"unknown prompt kind(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(PROMPT_KINDS)}"
        )
    root = Path(world_dir)
    if not root.is_dir():
        raise DataError(
            f"world directory {root} not found; create one with `ocelli world generate`"
        )
    root = root.resolve()
    prompts: list[RLPrompt] = []
    if "vqa" in kinds:
        prompts += [
            RLPrompt(
                id=question["id"],
                image=str(root / question["image"]),
                prompt=question["question"],
                kind="vqa",
                image_id=question["image_id"],
                answer=str(question["answer"]),
                question_type=question["type"],
            )
            for question in load_questions(root)
            if question["lang"] == "en"
        ]
    if "describe" in kinds:
        prompts += [
            RLPrompt(
                id=record["id"],
                image=str(root / record["image"]),
                prompt=record["conversations"][0]["value"].removeprefix("<image>\n"),
                kind="describe",
                image_id=record["id"].rsplit("_", 1)[0],
            )
            for record in load_conversations(root, "describe.json")
            if record.get("lang", "en") == "en"
        ]
    if not prompts:
        raise DataError(
            f"{root}: no English {' or '.join(kinds)} prompts; generate the world with --lang en"
        )
    if limit is not None and limit < len(prompts):
        order = np.random.default_rng(seed).permutation(len(prompts))
        prompts = [prompts[i] for i in sorted(order[:limit])]
    return prompts


class Reward(Protocol):
    """What the RL loop asks of a reward: one float per (prompt, response)."""

    name: str

    def __call__(self, prompts: Sequence[RLPrompt], responses: Sequence[str]) -> list[float]: ...


class WorldReward:
    """The verifiable reward of a world split (see the module docstring)."""

    name = "world"

    def __init__(self, world_dir: str | Path) -> None:
        from ocelli.world.loading import load_scenes

        self.scenes = {scene.id: scene for scene in load_scenes(Path(world_dir).resolve())}

    def __call__(self, prompts: Sequence[RLPrompt], responses: Sequence[str]) -> list[float]:
        return [self.score(p, r) for p, r in zip(prompts, responses, strict=True)]

    def score(self, prompt: RLPrompt, response: str) -> float:
        from ocelli.align.sampled import description_score
        from ocelli.eval.world_vqa import is_correct

        if prompt.kind == "vqa":
            return float(is_correct(response, prompt.answer, prompt.question_type))
        scene = self.scenes.get(prompt.image_id)
        if scene is None:
            raise DataError(f"prompt {prompt.id}: image {prompt.image_id} is not in the world")
        return description_score(response, scene)


class LearnedReward:
    """A trained reward model's score of each conversation (rows batched, no gradient)."""

    def __init__(self, model_dir: str | Path, batch_size: int = 16) -> None:
        from ocelli.align.reward import RewardModel
        from ocelli.data.processing import OcelliProcessor

        self.directory = check_reward_model_dir(model_dir)
        self.name = f"model:{model_dir}"
        self.processor = OcelliProcessor.from_pretrained(self.directory)
        self.model = RewardModel.from_pretrained(self.directory).eval().requires_grad_(False)
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, prompts: Sequence[RLPrompt], responses: Sequence[str]) -> list[float]:
        from ocelli.data.images import load_image

        scores: list[float] = []
        device = next(self.model.parameters()).device
        for start in range(0, len(prompts), self.batch_size):
            chunk = list(zip(prompts, responses, strict=True))[start : start + self.batch_size]
            rows = [
                self.processor.encode_conversation(p.messages(r), 1)["input_ids"] for p, r in chunk
            ]
            batch = self.processor.pad(rows, padding_side="right")
            pixels = self.processor.image_processor([load_image(p.image) for p, _ in chunk])
            values = self.model.score(
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                pixels.to(device, next(self.model.parameters()).dtype),
            )
            scores += values.float().tolist()
        return scores

    def to(self, device: torch.device) -> LearnedReward:
        self.model.to(device)
        return self


def check_reward_model_dir(model_dir: str | Path) -> Path:
    """A directory that holds a reward model ocelli can load, or a CheckpointError that
    says what is wrong with it."""
    from ocelli.align.reward import HEAD_FILE

    path = Path(model_dir)
    if not path.is_dir():
        raise CheckpointError(
            f"reward model directory {path} not found; train one with `ocelli align reward` "
            "and give its final/ directory"
        )
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path} has no config.json: it is not a saved ocelli reward model")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("model_type") != "ocelli":
        raise CheckpointError(
            f"{path} holds a {config.get('model_type')!r} model, not an ocelli one; the reward "
            "model must be an ocelli model with a reward head (`ocelli align reward`)"
        )
    if not (path / HEAD_FILE).is_file():
        raise CheckpointError(
            f"{path} has no {HEAD_FILE}: it is not a reward model; train one with "
            "`ocelli align reward`"
        )
    from safetensors import safe_open

    hidden = config.get("text_config", {}).get("hidden_size")
    with safe_open(str(path / HEAD_FILE), framework="pt") as head:
        shape = head.get_slice("weight").get_shape() if "weight" in head.keys() else None
    if shape != [1, hidden]:
        raise CheckpointError(
            f"{path}: the reward head has shape {shape} but the model's hidden size is "
            f"{hidden}; the head was trained on another architecture, retrain it"
        )
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise CheckpointError(
            f"{path} has no tokenizer files; save the processor beside the reward model"
        )
    return path


def reward_from_spec(spec: str, world_dir: str | Path) -> Reward:
    """`world` or `model:DIR`, the CLI's --reward."""
    if spec == "world":
        return WorldReward(world_dir)
    if spec.startswith("model:") and spec.removeprefix("model:"):
        return LearnedReward(spec.removeprefix("model:"))
    raise ConfigError(
        f"unknown reward {spec!r}; give 'world' (the scene graph's verifiable reward) or "
        "'model:DIR' (a reward model trained with `ocelli align reward`)"
    )
