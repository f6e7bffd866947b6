"""Recipes: the whole training run (world, model, the six stages, evaluation) as one
dataclass, loaded from a YAML file in `recipes/` or a user's path, overridable with
`--set key.sub=value`, and saved beside every checkpoint it produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ocelli.config import apply_overrides, from_dict, load_yaml
from ocelli.errors import ConfigError
from ocelli.train.pretrain_vision import VisionPretrainConfig
from ocelli.train.trainer_config import TrainConfig

STAGES = ("vision", "text", "align", "perceive", "instruct", "dpo")


@dataclass
class WorldSection:
    preset: str = "quickstart"
    overrides: dict[str, Any] = field(default_factory=dict)
    train_images: int = 2000
    val_images: int = 100
    test_images: int = 300
    cogent_images: int = 200
    langs: list[str] = field(default_factory=lambda: ["en", "zh"])
    # train on CoGenT condition A and hold out B; off for worlds whose colours are fixed
    # per object (Sort-of-CLEVR)
    cogent: bool = True


@dataclass
class ModelSection:
    vision: str = "convnext-tiny"
    vision_overrides: dict[str, Any] = field(default_factory=dict)
    language_model: str = "llama-tiny"
    language_model_overrides: dict[str, Any] = field(default_factory=dict)
    connector: str = "mlp"
    connector_config: dict[str, Any] = field(default_factory=dict)
    vision_feature_layer: int = -1
    keep_cls: bool = False
    anyres: dict[str, Any] | None = None  # high-resolution tiling, see ocelli.model.anyres
    tokenizer: str | None = None  # a local HF tokenizer dir; None trains one on the world
    vocab_size: int = 1024
    max_length: int = 512


@dataclass
class StageSection:
    enabled: bool = True
    train: TrainConfig = field(default_factory=TrainConfig)
    # learning rate per part for the parts this stage trains; parts absent are frozen
    lr_by_part: dict[str, float] = field(default_factory=dict)
    lora: dict[str, Any] | None = None
    # the world file that feeds the stage; empty: text_conversations.json (text),
    # describe.json (align), conversations.json (instruct), built from questions.jsonl
    # (perceive); corpus.txt for plain LM pretraining
    data: str = ""
    # Validation while training (ocelli.train.validation), align and instruct only: every
    # eval_every optimizer steps and at the last, the loss on the val split's file of the
    # same name and (instruct) VQA accuracy on a seeded sample of eval_questions questions.
    eval_every: int = 0  # 0: off
    eval_questions: int = 200

    def __post_init__(self) -> None:
        if self.eval_every < 0:
            raise ConfigError(
                f"eval_every must be >= 0 optimizer steps (0 turns validation off), "
                f"got {self.eval_every}"
            )
        if self.eval_questions < 1:
            raise ConfigError(
                f"eval_questions must be >= 1 (set eval_every: 0 to turn validation off), "
                f"got {self.eval_questions}"
            )


@dataclass
class PerceiveSection(StageSection):
    """Stage 1b (ocelli.train.perceive): single questions that one look at the image
    answers, before stage 2. Off unless a recipe turns it on; stage 2 then starts from it."""

    enabled: bool = False
    # question types ("attribute") or type/subtype ("count/total") of the world's questions
    question_types: list[str] = field(default_factory=lambda: ["attribute", "count/total"])
    # languages of the questions; None: the world's (world.langs)
    langs: list[str] | None = None


@dataclass
class DPOSection:
    """Stage 3: DPO/IPO of the stage 2 model against a frozen copy of itself, on
    preference pairs built from the training world's ground truth (ocelli.align)."""

    enabled: bool = False
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(lr=5e-5, max_steps=50, batch_size=4)
    )
    beta: float = 0.1
    loss: str = "sigmoid"  # sigmoid (DPO) or ipo
    segment_weight: float = 1.0  # weight of the changed-span tokens (RLHF-V uses 5)
    sft_weight: float = 0.0  # SFT loss on the chosen answers added to DPO (TRL's rpo_alpha)
    kinds: list[str] | None = None  # preference kinds (ocelli.align.KINDS); None: all
    num_pairs: int | None = None  # a seeded sample of this many pairs; None: all
    yes_ratio: float = 0.5  # share of LRV negative questions whose answer is yes
    # a preference JSONL of one's own (ocelli align data format); empty: built from the
    # training world with the settings above
    data: str = ""


@dataclass
class EvalSection:
    max_new_tokens: int = 24
    batch_size: int = 32
    limit: int | None = None
    num_report_samples: int = 24
    device: str = "auto"  # "auto" uses CUDA when present, else the CPU
    # more `ocelli eval` tasks run on the test split after training (ocelli.train.quickstart_suite)
    suite: list[str] = field(default_factory=list)
    # samples per suite task (whole units: an MME pair, a CircularEval group); absent: limit
    suite_limits: dict[str, int] = field(default_factory=dict)


@dataclass
class Recipe:
    name: str = "custom"
    seed: int = 0
    world: WorldSection = field(default_factory=WorldSection)
    model: ModelSection = field(default_factory=ModelSection)
    vision_objective: VisionPretrainConfig = field(default_factory=VisionPretrainConfig)
    vision: StageSection = field(default_factory=StageSection)
    text: StageSection = field(default_factory=StageSection)
    align: StageSection = field(default_factory=StageSection)
    perceive: PerceiveSection = field(default_factory=PerceiveSection)
    instruct: StageSection = field(default_factory=StageSection)
    dpo: DPOSection = field(default_factory=DPOSection)
    eval: EvalSection = field(default_factory=EvalSection)

    def __post_init__(self) -> None:
        for name in ("vision", "text", "perceive"):
            if getattr(self, name).eval_every:
                raise ConfigError(
                    f"{name}.eval_every: validation during training runs on the align and "
                    f"instruct stages only; remove {name}.eval_every"
                )


def available_recipes() -> list[str]:
    folder = resources.files("ocelli.train") / "recipes"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Recipe:
    """A recipe by registered name (`quickstart`, `base`) or YAML path, with overrides."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        data = load_yaml(path)
    elif name_or_path in available_recipes():
        data = load_yaml(
            Path(str(resources.files("ocelli.train") / "recipes" / f"{name_or_path}.yaml"))
        )
    else:
        raise ConfigError(
            f"unknown recipe {name_or_path!r}; registered recipes: {', '.join(available_recipes())} "
            "(or give a path to a .yaml file)"
        )
    data = apply_overrides(data, overrides or [])
    return from_dict(Recipe, data, where=f"recipe {name_or_path}")
