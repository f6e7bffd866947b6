"""Hallucination of one trained run, measured in one go on its world's test split.

Rows: the SFT model (stage 2, `instruct/final`) with greedy decoding (the baseline),
with temperature-1 sampling, with visual contrastive decoding at each `vcd_alphas`
value, its greedy answers rewritten by ocelli.align.corrector (Woodpecker), the
DPO-aligned model (stage 3, `dpo/final`) with greedy decoding, and, with `align_rows`
on, five more models of the same SFT start, each decoded greedily:
  LRV-augmented SFT     `lrv_steps` more steps of SFT on stage 2's conversations with
                        the world's LRV negative instructions mixed in
  DPO + SFT term        stage 3's pairs and settings plus `dpo_sft_weight` of SFT loss
                        on the chosen answers (TRL's rpo_alpha)
  Segment-weighted DPO  the same with the changed spans' tokens weighted
    + SFT term          `dpo_segment_weight` (RLHF-V), so the two rows differ in that only
  RLHF                  GRPO against a Bradley-Terry reward model trained on stage 3's pairs
  RL (verifiable)       GRPO against the world's exact reward (answers checked against the
                        scene graph, descriptions scored by claim F1) on `rl_kinds` prompts
These are trained into `align_dir` (default RUN/bench-align) unless already there;
their settings and training figures are kept with the results.
Columns: POPE accuracy / F1 / yes-ratio for its three samplings (random, popular,
adversarial), CHAIR_i and CHAIR_s over detailed captions, the exact claim precision and
fact recall of the same captions against the scene graph, world-VQA accuracy (with the
blind baseline of the same questions) and the time per answer relative to greedy.
Every row answers the same questions (ocelli.eval's tasks, seeded). A quickstart run's
figures go to results/hallucination.json and the docs section `hallucination`; a run of
another recipe keeps its own (`hallucination_base` for `--recipe base`).

    python benchmarks/hallucination.py --run runs/quickstart     # a finished run
    python benchmarks/hallucination.py --tiny --no-docs          # smoke test, seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as common

from ocelli.errors import CheckpointError, ConfigError
from ocelli.eval.backends import LocalBackend, Request
from ocelli.train.quickstart import HALLUCINATION_METRICS, HALLUCINATION_TASKS

NAME = "hallucination"
POPE_KINDS = ("random", "popular", "adversarial")
# The quickstart's hallucination tasks plus exact claim precision / fact recall of the
# same detailed descriptions CHAIR reads (ocelli.eval's `faith`).
TASKS = (*HALLUCINATION_TASKS, "faith")
CLAIM_METRICS = ("precision", "recall", "f1")
# The quickstart recipe shrunk to seconds, for --tiny: a 48-image English world, a
# one-layer LM, one step a stage and a few preference pairs.
TINY_RECIPE = [
    "world.train_images=48",
    "world.val_images=0",
    "world.test_images=4",
    "world.cogent_images=0",
    "world.langs=[en]",
    "model.vision_overrides={patch_size: 4, hidden_sizes: [16, 32], depths: [1, 1]}",
    "model.language_model_overrides={hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 2}",
    "dpo.num_pairs=8",
    "dpo.train.batch_size=2",
    *[f"{stage}.train.batch_size=8" for stage in ("vision", "text", "align", "perceive", "instruct")],
]


@dataclass
class HallucinationBenchConfig:
    run: str | None = None  # a run directory with instruct/final, dpo/final and world/test
    limit: int | None = 200  # questions per task (POPE, CHAIR, VQA); None: all
    batch_size: int = 32
    vcd_alphas: list[float] = field(default_factory=lambda: [0.5, 1.0])
    vcd_beta: float = 0.1
    vcd_noise_step: int = 500
    sampling: bool = True  # also the SFT model with temperature-1 sampling
    woodpecker: bool = True  # also SFT greedy answers rewritten by ocelli.align.corrector
    seed: int = 0
    align_rows: bool = True  # also LRV-augmented SFT, the two DPO variants, RLHF and RL
    align_dir: str | None = None  # where those models are trained; None: RUN/bench-align
    lrv_steps: int = 100  # LRV-augmented SFT: steps of lrv_batch_size records at lrv_lr
    lrv_batch_size: int = 16
    lrv_lr: float = 1e-4
    dpo_sft_weight: float = 1.0
    dpo_segment_weight: float = 5.0  # the segment-weighted row (RLHF-V used 5)
    reward_steps: int = 80  # reward model: steps at stage 3's batch size and lr 1e-4
    rl_steps: int = 80
    rl_batch_size: int = 8  # prompts per step; each gets rl_group_size sampled answers
    rl_group_size: int = 4
    rl_lr: float = 1e-4  # 1e-5 left the policy within KL 0.003 of SFT in 60 steps
    rl_kl_coef: float = 0.04
    rl_max_new_tokens: int = 48
    rl_num_prompts: int | None = 2000  # a seeded sample of the training world's prompts
    # Detailed descriptions only: the claim reward is what CHAIR measures; with the
    # world's questions too, the policy learned to answer every existence question "no".
    rl_kinds: list[str] = field(default_factory=lambda: ["describe"])

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1 or self.batch_size < 1:
            raise ConfigError(
                f"limit and batch_size must be >= 1, got {self.limit}, {self.batch_size}"
            )
        if self.lrv_steps < 1 or self.lrv_batch_size < 1 or not self.lrv_lr > 0:
            raise ConfigError(
                f"lrv_steps and lrv_batch_size must be >= 1 and lrv_lr positive, got "
                f"{self.lrv_steps}, {self.lrv_batch_size}, {self.lrv_lr}"
            )
        from ocelli.align.rewards import PROMPT_KINDS

        if not self.rl_kinds or not set(self.rl_kinds) <= set(PROMPT_KINDS):
            raise ConfigError(
                f"rl_kinds must name one or more of {', '.join(PROMPT_KINDS)}, got {self.rl_kinds}"
            )


class DecodingBackend(LocalBackend):
    """ocelli.eval's local backend with one decoding method applied to every answer.

    Greedy rows answer through the backend's own greedy path, exactly like the baseline;
    other rows (sampling, VCD) through the pipeline's chat_batch with their generation
    arguments. With `correct`, each answer is then checked against its (last) image and
    rewritten by ocelli.align.corrector (Woodpecker). The method lives here, not in a
    wrapper around the pipeline, because the backend may answer from `pipeline.model`
    directly and would step around one."""

    def __init__(self, model_dir: Path, method: str, generation_kwargs: dict[str, Any]) -> None:
        super().__init__(model_dir)
        self.method = method
        self.generation_kwargs = dict(generation_kwargs)
        self.corrector = None
        if self.generation_kwargs.pop("correct", False):
            from ocelli.align.corrector import Corrector

            self.corrector = Corrector(self.pipeline, evidence=False)
        self.greedy = all(
            key == "do_sample" and value is False for key, value in self.generation_kwargs.items()
        )

    @property
    def supports_loglik(self) -> bool:  # ranking given answers would skip the method
        return self.greedy and self.corrector is None

    def generation_settings(self) -> dict[str, Any]:
        settings = super().generation_settings() if self.greedy else {"padding_side": "left"}
        return {**settings, "decoding": self.method, "corrected": self.corrector is not None}

    def _batch(self, requests: list[Request]) -> list[str]:
        if self.greedy:
            answers = super()._batch(requests)
        else:
            answers = self.pipeline.chat_batch(
                [r.images for r in requests],
                [r.prompt for r in requests],
                max_new_tokens=requests[0].max_new_tokens,
                **self.generation_kwargs,
            )
        if self.corrector is None:
            return answers
        return [
            self.corrector.correct(request.images[-1], answer, request.prompt).text
            for request, answer in zip(requests, answers, strict=True)
        ]

    def chat_batch(
        self, images: Sequence[Sequence[Any]], prompts: Sequence[str], max_new_tokens: int
    ) -> list[str]:
        """The pipeline's batch call, answered like the harness's requests (world-VQA)."""
        requests = [
            Request([str(image) for image in group], prompt, max_new_tokens)
            for group, prompt in zip(images, prompts, strict=True)
        ]
        return self._batch(requests)


def methods(config: HallucinationBenchConfig, run: Path) -> list[tuple[str, Path, dict]]:
    """(row name, model directory, generation arguments) of every row, baseline first."""
    from ocelli.generate import VCDConfig

    sft, aligned = run / "instruct" / "final", run / "dpo" / "final"
    rows: list[tuple[str, Path, dict]] = [("SFT greedy", sft, {"do_sample": False})]
    if config.sampling:
        rows.append(("SFT sampling (T=1)", sft, {"do_sample": True, "temperature": 1.0}))
    for alpha in config.vcd_alphas:
        vcd = VCDConfig(alpha=alpha, beta=config.vcd_beta, noise_step=config.vcd_noise_step)
        rows.append((f"SFT + VCD (alpha {alpha:g})", sft, {"do_sample": False, "vcd": vcd}))
    if config.woodpecker:
        rows.append(("SFT greedy + Woodpecker", sft, {"do_sample": False, "correct": True}))
    rows.append(("DPO (stage 3) greedy", aligned, {"do_sample": False}))
    for name, directory, _ in rows:
        if not (directory / "config.json").is_file():
            raise CheckpointError(
                f"{directory} is not a saved model (row {name!r}); give --run a run directory "
                "whose stages 2 and 3 finished (ocelli train --recipe quickstart --stage dpo)"
            )
    if config.align_rows:
        models = align_models(config, run)
        rows += [(f"{name} greedy", final, {"do_sample": False}) for name, final in models.items()]
    return rows


ALIGN_ROWS = (
    "LRV-augmented SFT",
    "DPO + SFT term",
    "Segment-weighted DPO + SFT term",
    "RLHF (learned reward)",
    "RL (verifiable reward)",
)
ALIGN_DIRS = dict(
    zip(ALIGN_ROWS, ("lrv-sft", "dpo-sft", "dpo-segment", "rlhf", "rl-world"), strict=True)
)
RL_ROWS = ("RLHF (learned reward)", "RL (verifiable reward)")


def align_models(config: HallucinationBenchConfig, run: Path) -> dict[str, Path]:
    """The extra models' final directories, trained from the run's SFT model when they
    are not there yet; their summaries go to align_dir/summaries.json."""
    from ocelli.align import DPOConfig, lrv_conversations, train_dpo, train_reward, train_sft
    from ocelli.data import load_conversations
    from ocelli.train.trainer_config import TrainConfig
    from ocelli.utils.io import atomic_write_json

    out = Path(config.align_dir) if config.align_dir else run / "bench-align"
    sft, pairs, world = run / "instruct" / "final", run / "dpo" / "pairs.jsonl", run / "world"
    stage3_file = run / "dpo" / "align_summary.json"
    if not pairs.is_file() or not stage3_file.is_file():
        raise CheckpointError(
            f"{run / 'dpo'} lacks pairs.jsonl or align_summary.json, which the DPO variants, "
            "RLHF and RL rows train from; rerun stage 3 or --set align_rows=false"
        )
    stage3 = json.loads(stage3_file.read_text(encoding="utf-8"))
    dirs = {name: out / ALIGN_DIRS[name] for name in ALIGN_ROWS}
    reward_dir = out / "reward"

    if missing(dirs["LRV-augmented SFT"]):
        # Stage 2's instruction data with the LRV negatives mixed in, from the SFT model.
        records = load_conversations(world / "train" / "conversations.json")
        records += lrv_conversations(world / "train", config.seed)
        lrv_train = TrainConfig(
            lr=config.lrv_lr,
            max_steps=config.lrv_steps,
            batch_size=config.lrv_batch_size,
            seed=config.seed,
        )
        train_sft(sft, records, dirs["LRV-augmented SFT"], lrv_train, description="lrv sft")
    dpo_rows = {
        "DPO + SFT term": {"sft_weight": config.dpo_sft_weight},
        "Segment-weighted DPO + SFT term": {
            "sft_weight": config.dpo_sft_weight,
            "segment_weight": config.dpo_segment_weight,
        },
    }
    for name, changes in dpo_rows.items():
        if missing(dirs[name]):
            dpo = DPOConfig(**{**stage3["dpo"], **changes})
            train_dpo(sft, pairs, dirs[name], dpo, TrainConfig(**stage3["train"]))
    if missing(reward_dir):
        batch = stage3["train"]["batch_size"]
        reward_train = TrainConfig(lr=1e-4, max_steps=config.reward_steps, batch_size=batch)
        train_reward(sft, pairs, reward_dir, reward_train)
    train_rl_rows(config, run, dirs, reward_dir)
    atomic_write_json(out / "summaries.json", align_summaries(dirs, reward_dir))
    return {name: directory / "final" for name, directory in dirs.items()}


def train_rl_rows(
    config: HallucinationBenchConfig, run: Path, dirs: dict[str, Path], reward_dir: Path
) -> None:
    """GRPO from the SFT model against the learned reward and the world's exact one."""
    from ocelli.align import RLConfig, train_rl
    from ocelli.train.trainer_config import TrainConfig

    rl = RLConfig(
        group_size=config.rl_group_size,
        kl_coef=config.rl_kl_coef,
        max_new_tokens=config.rl_max_new_tokens,
        kinds=list(config.rl_kinds),
        num_prompts=config.rl_num_prompts,
    )
    rl_train = TrainConfig(
        lr=config.rl_lr,
        max_steps=config.rl_steps,
        batch_size=config.rl_batch_size,
        seed=config.seed,
    )
    specs = {
        "RLHF (learned reward)": f"model:{reward_dir / 'final'}",
        "RL (verifiable reward)": "world",
    }
    sft = run / "instruct" / "final"
    for name, spec in specs.items():
        if missing(dirs[name]):
            train_rl(sft, run / "world" / "train", spec, dirs[name], rl, rl_train)


def missing(directory: Path) -> bool:
    """Whether a row's model has not been trained into `directory` yet."""
    return not (directory / "final" / "config.json").is_file()


def align_summaries(dirs: dict[str, Path], reward_dir: Path) -> dict[str, Any]:
    """What each extra model was trained with and how training went, from the summary
    files its stage wrote (so models trained by an earlier call report their own)."""

    def read(path: Path) -> dict[str, Any]:
        return json.loads(path.read_text(encoding="utf-8"))

    lrv = read(dirs["LRV-augmented SFT"] / "sft_summary.json")
    reward = read(reward_dir / "reward_summary.json")
    summaries: dict[str, Any] = {
        "LRV-augmented SFT": {
            "num_records": lrv["num_records"],
            "train": {k: lrv["train"][k] for k in ("lr", "max_steps", "batch_size")},
            "final_loss": lrv["result"]["final_loss"],
        },
        "reward model": {k: v for k, v in reward.items() if k != "result"},
    }
    for name in ("DPO + SFT term", "Segment-weighted DPO + SFT term"):
        dpo = read(dirs[name] / "align_summary.json")
        summaries[name] = {"dpo": dpo["dpo"], "steps": dpo["result"]["steps"]}
    for name in RL_ROWS:
        rl = read(dirs[name] / "rl_summary.json")
        train = {k: rl["train"][k] for k in ("lr", "max_steps", "batch_size")}
        summaries[name] = {
            **{k: rl[k] for k in ("reward", "rl", "first_step", "last_step")},
            "train": train,
        }
    return summaries


def measure_row(
    config: HallucinationBenchConfig, run: Path, work: Path, method: tuple[str, Path, dict]
) -> dict[str, Any]:
    """One row: POPE and CHAIR through ocelli.eval's harness, then world-VQA."""
    from ocelli.eval.harness import evaluate
    from ocelli.eval.world_vqa import blind_baseline, evaluate_world_vqa

    name, model_dir, generation_kwargs = method
    backend = DecodingBackend(model_dir, name, generation_kwargs)
    test = run / "world" / "test"
    began = time.perf_counter()
    results = evaluate(
        backend,
        ",".join(TASKS),
        work / f"row{len(list(work.iterdir()))}",
        data_dir=test,
        limit=config.limit,
        batch_size=config.batch_size,
        progress=False,
    )
    vqa = evaluate_world_vqa(
        backend, test, limit=config.limit, batch_size=config.batch_size, progress=False
    )
    seconds = time.perf_counter() - began
    answers = sum(task["num_samples"] for task in results["tasks"].values()) + len(vqa.records)
    row = {
        task: {
            k: round(v, 4)
            for k, v in values["metrics"].items()
            if k in (CLAIM_METRICS if task == "faith" else HALLUCINATION_METRICS)
        }
        for task, values in results["tasks"].items()
    }
    return {
        "method": name,
        "model": str(model_dir),
        **row,
        "vqa_accuracy": round(vqa.metrics["accuracy"], 4),
        "vqa_blind_baseline": round(
            blind_baseline(run / "world" / "train", vqa.records)["accuracy"], 4
        ),
        "num_answers": answers,
        "seconds": round(seconds, 2),
        "seconds_per_answer": seconds / max(answers, 1),
    }


def tiny_run(work: Path) -> Path:
    """A finished quickstart-shaped run of a few seconds (every stage, one step)."""
    from ocelli.train.recipe import load_recipe
    from ocelli.train.runners import run_recipe

    out = work / "tiny-run"
    run_recipe(load_recipe("quickstart", TINY_RECIPE), out, max_steps=1, progress=False)
    return out


def run(config: HallucinationBenchConfig, threads: int | None) -> dict[str, Any]:
    threads = common.set_threads(threads)
    load = common.load_average()
    with tempfile.TemporaryDirectory(prefix="ocelli-halluc-") as tmp:
        work = Path(tmp)
        run_dir = Path(config.run) if config.run else tiny_run(work)
        rows_dir = work / "rows"
        rows_dir.mkdir()
        rows = [measure_row(config, run_dir, rows_dir, m) for m in methods(config, run_dir)]
        align_dir = Path(config.align_dir) if config.align_dir else run_dir / "bench-align"
        summaries = align_dir / "summaries.json"
        trained = json.loads(summaries.read_text()) if summaries.is_file() else None
    greedy = rows[0]["seconds_per_answer"]
    for row in rows:
        row["time_vs_greedy"] = round(row["seconds_per_answer"] / greedy, 3)
        row["seconds_per_answer"] = round(row["seconds_per_answer"], 4)
    return {
        "run": config.run or "(tiny run)",
        "rows": rows,
        "align_training": trained,
        "threads": threads,
        "load_average": load,
    }


def render(record: dict[str, Any]) -> str:
    results = record["results"]
    header = ["method"]
    header += [f"POPE {kind} acc / F1 / yes" for kind in POPE_KINDS]
    header += ["CHAIR_i", "CHAIR_s", "claim P / R", "VQA acc", "time / greedy"]
    table = []
    for row in results["rows"]:
        pope = [row[f"pope_{kind}"] for kind in POPE_KINDS]
        cells = [f"{p['accuracy']:.3f} / {p['f1']:.3f} / {p['yes_ratio']:.2f}" for p in pope]
        claims = f"{row['faith']['precision']:.3f} / {row['faith']['recall']:.3f}"
        table.append(
            [row["method"], *cells, f"{row['chair']['chair_i']:.3f}", f"{row['chair']['chair_s']:.3f}",
             claims, f"{row['vqa_accuracy']:.3f}", f"{row['time_vs_greedy']:.2f}x"]
        )  # fmt: skip
    first = results["rows"][0]
    return "\n".join(
        [
            "### Hallucination: SFT greedy against sampling, VCD, Woodpecker, LRV, DPO and RL"
            + ("" if record["benchmark"] == NAME else f" ({record['benchmark'][len(NAME) + 1 :]})"),
            "",
            common.markdown_table(header, table),
            "",
            f"*{common.caption(record)} Run `{results['run']}`, world test split; "
            f"{first['num_answers']} answers a row (POPE and VQA up to "
            f"{record['config']['limit']} questions each, CHAIR and claim precision / fact "
            "recall over as many detailed captions); "
            f"blind VQA baseline on the same questions {first['vqa_blind_baseline']:.3f}. "
            "Time is each row's wall time per answer over the greedy row's, on a shared "
            "machine. Produced by `benchmarks/hallucination.py`.*",
            "",
            training_note(results.get("align_training")),
            "",
            f"![hallucination by method]({record['plot']})" if record.get("plot") else "",
        ]
    )


def training_note(trained: dict[str, Any] | None) -> str:
    """How the extra rows' models were trained, from their summaries."""
    if not trained:
        return ""
    lrv, reward = trained["LRV-augmented SFT"], trained["reward model"]
    parts = [
        f"LRV-augmented SFT: the SFT model tuned {lrv['train']['max_steps']} more steps of "
        f"{lrv['train']['batch_size']} at lr {lrv['train']['lr']:g} on stage 2's "
        f"conversations with the LRV negative instructions mixed in ({lrv['num_records']} "
        "records).",
    ]
    for name in ("DPO + SFT term", "Segment-weighted DPO + SFT term"):
        dpo = trained[name]["dpo"]
        parts.append(
            f"{name}: stage 3's pairs and settings with SFT weight {dpo['sft_weight']:g} and "
            f"segment weight {dpo['segment_weight']:g}, {trained[name]['steps']} steps."
        )
    parts.append(
        f"Reward model: {reward['num_train_pairs']} stage 3 pairs, "
        f"{reward['train']['max_steps']} steps, held-out accuracy "
        f"{reward['heldout_accuracy_before']:.3f} -> {reward['heldout_accuracy']:.3f} on "
        f"{reward['num_heldout_pairs']} pairs."
    )
    for name in RL_ROWS:
        run = trained[name]
        rl, train, first, last = run["rl"], run["train"], run["first_step"], run["last_step"]
        parts.append(
            f"{name}: {rl['advantage'].upper()} on {'/'.join(rl['kinds'])} prompts, "
            f"{train['max_steps']} steps of {train['batch_size']} prompts x "
            f"{rl['group_size']} answers, KL coefficient {rl['kl_coef']:g}, lr {train['lr']:g}; "
            f"batch reward {first['reward_mean']:.3f} (step 1) -> {last['reward_mean']:.3f} "
            f"(step {last['step']}), KL {last['kl']:.4f}."
        )
    return "*" + " ".join(parts) + "*"


def write_plot(record: dict[str, Any], out_png: Path) -> None:
    """Adversarial POPE F1, yes-ratio and CHAIR_i per method, one bar group each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = record["results"]["rows"]
    measures = {
        "POPE adversarial F1": [r["pope_adversarial"]["f1"] for r in rows],
        "POPE adversarial yes-ratio": [r["pope_adversarial"]["yes_ratio"] for r in rows],
        "CHAIR_i": [r["chair"]["chair_i"] for r in rows],
        "claim precision": [r["faith"]["precision"] for r in rows],
        "VQA accuracy": [r["vqa_accuracy"] for r in rows],
    }
    figure, axis = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(rows)
    for index, row in enumerate(rows):
        xs = [m + index * width for m in range(len(measures))]
        axis.bar(xs, [values[index] for values in measures.values()], width, label=row["method"])
    axis.set_xticks([m + 0.4 - width / 2 for m in range(len(measures))], list(measures))
    axis.set_ylim(0, 1)
    axis.legend(fontsize=7)
    axis.set_title("Hallucination by decoding / alignment method (world test split)")
    figure.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out_png, dpi=100)
    plt.close(figure)


def section_name(run_dir: Path | None) -> str:
    """`hallucination` for a quickstart run (or none), `hallucination_<recipe>` for a run
    of another recipe, so that each recipe keeps its own results file and docs table."""
    recipe_file = run_dir / "instruct" / "recipe.json" if run_dir else None
    if recipe_file is None or not recipe_file.is_file():
        return NAME
    try:
        recipe = json.loads(recipe_file.read_text())["recipe"]["name"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{recipe_file} is not a stage record written by ocelli train") from exc
    return NAME if recipe == "quickstart" else f"{NAME}_{recipe}"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--run", default=None, help="a finished run directory (stages 2 and 3)")
    parser.add_argument("--tiny", action="store_true", help="a tiny run made on the spot")
    known, rest = parser.parse_known_args(argv)
    if not known.tiny and not known.run:
        raise SystemExit("give --run RUN_DIR (a finished quickstart run) or --tiny")
    settings = [f"run={known.run}"] if known.run else []
    if known.tiny:
        settings += ["limit=4", "batch_size=4", "vcd_alphas=[1.0]", "reward_steps=2"]
        settings += ["rl_steps=2", "rl_batch_size=2", "rl_group_size=2", "rl_max_new_tokens=12"]
        settings += ["rl_num_prompts=16", "lrv_steps=2", "lrv_batch_size=4"]
    rest = [arg for item in settings for arg in ("--set", item)] + list(rest)
    name = section_name(Path(known.run) if known.run else None)
    config, args = common.parse_args(
        HallucinationBenchConfig, __doc__.split("\n")[0], rest, common.RESULTS_DIR / f"{name}.json"
    )
    record = common.write_results(args.out, name, config, run(config, args.threads))
    if not args.no_docs:
        png = args.docs.parent / "images" / f"{name}.png"
        write_plot(record, png)
        record["plot"] = str(png.relative_to(args.docs.parent))
        common.update_docs_section(args.docs, name, render(record))
    print(render(record))
    return record


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
