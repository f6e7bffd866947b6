"""The survey's training recipe as six stages, each deciding in one place what it
trains, on which data, and from which checkpoint it starts.

- vision   (stage 0): the vision encoder pretrained on the world's images (contrastive
  + dense scene-graph targets), saved as a Hugging Face vision checkpoint;
- text     (stage 0): the language model pretrained on the world's text corpus;
- align    (stage 1): encoder and LM frozen, the connector learns from captions;
- perceive (stage 1b, off unless the recipe turns it on): connector + LM on single
  questions that one look at the image answers (ocelli.train.perceive);
- instruct (stage 2): connector + LM (optionally LoRA, optionally the encoder at a low
  rate) on multi-turn conversations, loss on the assistant's tokens only;
- dpo      (stage 3): preference alignment of the stage 2 model (DPO or IPO against a
  frozen copy of it) on preference pairs built from the world's ground truth.

Stages 1 and 2 load the stage 0 parts from their directories through
`OcelliForConditionalGeneration.from_components`, the path real CLIP/Qwen weights take.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from ocelli.errors import CheckpointError, ConfigError
from ocelli.train.recipe import Recipe, StageSection
from ocelli.utils import atomic_write_json, provenance


class RunPaths:
    """Where each piece of a run lives under its root directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def world(self, split: str) -> Path:
        return self.root / "world" / split

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    def stage(self, name: str) -> Path:
        return self.root / name

    def model(self, name: str) -> Path:
        return self.root / name / "final"

    @property
    def vision_encoder(self) -> Path:
        return self.root / "vision" / "encoder"


def write_stage_config(
    recipe: Recipe, stage_dir: Path, extra: dict[str, Any] | None = None
) -> None:
    atomic_write_json(
        stage_dir / "recipe.json",
        {"recipe": asdict(recipe), **(extra or {}), "provenance": provenance()},
    )


def require(path: Path, stage: str, what: str) -> Path:
    if not path.exists():
        raise CheckpointError(
            f"{path} not found: stage {stage!r} needs {what}; run the earlier stages first "
            "(ocelli train without --stage runs them all)"
        )
    return path


def param_groups(
    model: Any, section: StageSection, stage: str, adapter_parts: tuple[str, ...] = ()
) -> dict[str, tuple[list, float]]:
    """Parameter groups with per-part learning rates; parts not named are frozen. In
    `adapter_parts` (LoRA) only the parameters already trainable, the adapters, train."""
    parts = model.parameter_groups()
    unknown = set(section.lr_by_part) - set(parts)
    if unknown:
        raise ConfigError(
            f"{stage}.lr_by_part names unknown part(s) {', '.join(sorted(unknown))}; "
            f"parts are {', '.join(sorted(parts))}"
        )
    if not section.lr_by_part:
        raise ConfigError(f"{stage}.lr_by_part is empty: name at least one part to train")
    groups = {}
    for name, params in parts.items():
        trainable = name in section.lr_by_part
        if name in adapter_parts:
            params = [param for param in params if param.requires_grad]
        for param in params:
            param.requires_grad_(trainable)
        if trainable:
            groups[name] = (params, float(section.lr_by_part[name]))
    return groups
