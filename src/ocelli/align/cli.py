"""`ocelli align ...`: argument parsing and handlers (the top-level cli.py delegates here)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console

from ocelli.errors import ConfigError


def add_align_parser(sub: argparse._SubParsersAction) -> None:
    align = sub.add_parser("align", help="preference data and alignment tuning (DPO, IPO)")
    align_sub = align.add_subparsers(dest="align_command", required=True)
    data = align_sub.add_parser("data", help="write preference pairs from a world's ground truth")
    data.add_argument("--world", required=True, help="a world split (ocelli world generate)")
    data.add_argument("--out", required=True, help="JSONL file to write")
    data.add_argument(
        "--kinds",
        default=None,
        help="comma-separated: object, attribute, count, relation, answer, negative (default "
        "all of these), povid (needs --model: its answers about noised images as rejected)",
    )
    data.add_argument("--seed", type=int, default=0)
    data.add_argument(
        "--yes-ratio", type=float, default=0.5, help="share of LRV questions answered yes"
    )
    data.add_argument(
        "--model", default=None, help="also pair this model's best and worst sampled descriptions"
    )
    data.add_argument("--samples", type=int, default=4, help="descriptions sampled per image")
    data.add_argument("--limit", type=int, default=None, help="images to sample (default all)")
    data.add_argument(
        "--instructions",
        default=None,
        help="also write the LRV negative instructions as LLaVA-format JSON here",
    )

    dpo = align_sub.add_parser("dpo", help="DPO or IPO of a saved model on preference pairs")
    dpo.add_argument("--model", required=True, help="saved ocelli model (the SFT final/ dir)")
    dpo.add_argument("--data", required=True, help="preference JSONL (ocelli align data)")
    dpo.add_argument("--out", required=True, help="run directory; the model goes to OUT/final")
    dpo.add_argument("--reference", default=None, help="reference model dir (default: --model)")
    dpo.add_argument("--beta", type=float, default=0.1)
    dpo.add_argument("--loss", default="sigmoid", choices=["sigmoid", "ipo"])
    dpo.add_argument(
        "--segment-weight", type=float, default=1.0, help="weight of changed-span tokens"
    )
    dpo.add_argument(
        "--sft-weight",
        type=float,
        default=0.0,
        help="add this much SFT loss on the chosen answers (TRL's rpo_alpha; 0: plain DPO)",
    )
    _add_train_options(dpo, lr=5e-5)
    dpo.add_argument("--resume", action="store_true")
    reward = align_sub.add_parser("reward", help="train a Bradley-Terry reward model on pairs")
    reward.add_argument("--model", required=True, help="saved ocelli model to start from")
    reward.add_argument("--data", required=True, help="preference JSONL (ocelli align data)")
    reward.add_argument("--out", required=True, help="run directory; the model goes to OUT/final")
    reward.add_argument("--holdout", type=float, default=0.2, help="share of images held out")
    _add_train_options(reward, lr=1e-4)
    _add_rl_parser(align_sub)


def _add_rl_parser(align_sub: argparse._SubParsersAction) -> None:
    rl = align_sub.add_parser(
        "rl", help="GRPO/RLOO against a reward (the world's or a reward model's), KL to SFT"
    )
    rl.add_argument("--model", required=True, help="saved ocelli model (the SFT final/ dir)")
    rl.add_argument("--world", required=True, help="world split whose prompts are sampled")
    rl.add_argument(
        "--reward",
        default="world",
        help="'world' (exact check against the scene graph) or 'model:DIR' (a reward model)",
    )
    rl.add_argument("--out", required=True, help="run directory; the model goes to OUT/final")
    rl.add_argument("--reference", default=None, help="reference model dir (default: --model)")
    rl.add_argument("--group-size", type=int, default=4, help="answers sampled per prompt (k)")
    rl.add_argument("--kl-coef", type=float, default=0.04, help="weight of the KL to the reference")
    rl.add_argument("--advantage", default="grpo", choices=["grpo", "rloo"])
    rl.add_argument("--aggregation", default="token", choices=["token", "sequence"])
    rl.add_argument("--temperature", type=float, default=1.0)
    rl.add_argument("--max-new-tokens", type=int, default=48)
    rl.add_argument("--kinds", default="vqa,describe", help="prompt kinds: vqa, describe")
    rl.add_argument("--num-prompts", type=int, default=None, help="a seeded sample of prompts")
    _add_train_options(rl, lr=1e-5)
    rl.add_argument("--resume", action="store_true")


def _add_train_options(parser: argparse.ArgumentParser, lr: float) -> None:
    parser.add_argument("--max-steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=lr)


def _train_config(args: argparse.Namespace) -> Any:
    from ocelli.train.trainer_config import TrainConfig

    return TrainConfig(lr=args.lr, max_steps=args.max_steps, batch_size=args.batch_size)


def align_command(args: argparse.Namespace, console: Console) -> int:
    handlers = {"data": _data, "dpo": _dpo, "reward": _reward, "rl": _rl}
    return handlers[args.align_command](args, console)


def _data(args: argparse.Namespace, console: Console) -> int:
    from ocelli.align.pairs import load_pairs
    from ocelli.align.preference_data import instruction_records, write_preference_data
    from ocelli.utils.io import atomic_write_json

    kinds = args.kinds.split(",") if args.kinds is not None else None
    povid = kinds is not None and "povid" in [kind.strip() for kind in kinds]
    if povid:
        kinds = [kind for kind in kinds if kind.strip() != "povid"]
        if not args.model:
            raise ConfigError("kind povid needs --model: the model answers about noised images")
    extra = []
    if povid:
        from ocelli.align.povid import povid_pairs
        from ocelli.generate import load

        extra += povid_pairs(load(args.model), args.world, limit=args.limit, seed=args.seed)
    elif args.model:
        from ocelli.align.sampled import sampled_pairs
        from ocelli.generate import load

        pipeline = load(args.model)
        extra = sampled_pairs(pipeline, args.world, args.samples, limit=args.limit, seed=args.seed)
    summary = write_preference_data(
        args.world, args.out, kinds, args.seed, args.yes_ratio, extra=extra
    )
    if args.instructions:
        records = instruction_records(load_pairs(args.out, check_images=False))
        atomic_write_json(args.instructions, records)
        console.print(f"wrote {len(records)} negative instructions to {args.instructions}")
    console.print(f"wrote {summary['num_pairs']} pairs to {args.out}")
    console.print(_one_line(summary))
    return 0


def _one_line(summary: dict[str, Any]) -> str:
    shown = {k: v for k, v in summary.items() if k not in ("world", "num_pairs")}
    return json.dumps(shown, sort_keys=True)


def _dpo(args: argparse.Namespace, console: Console) -> int:
    from ocelli.align.dpo import DPOConfig
    from ocelli.align.training import train_dpo

    config = DPOConfig(
        beta=args.beta,
        loss=args.loss,
        segment_weight=args.segment_weight,
        sft_weight=args.sft_weight,
    )
    summary = train_dpo(
        args.model,
        args.data,
        args.out,
        config,
        _train_config(args),
        reference_dir=args.reference,
        resume=args.resume,
    )
    result = summary["result"]
    console.print(
        f"{args.loss} on {summary['num_pairs']} pairs: {result['steps']} steps, final loss "
        f"{result['final_loss']:.4f}; model in {result['final_dir']}"
    )
    return 0


def _reward(args: argparse.Namespace, console: Console) -> int:
    from ocelli.align.training import train_reward

    summary = train_reward(
        args.model, args.data, args.out, _train_config(args), holdout=args.holdout
    )
    console.print(
        f"reward model: held-out accuracy {summary['heldout_accuracy']:.3f} on "
        f"{summary['num_heldout_pairs']} pairs (before training "
        f"{summary['heldout_accuracy_before']:.3f}); model in {summary['result']['final_dir']}"
    )
    return 0


def _rl(args: argparse.Namespace, console: Console) -> int:
    from ocelli.align.rl import RLConfig
    from ocelli.align.training import train_rl

    config = RLConfig(
        group_size=args.group_size,
        kl_coef=args.kl_coef,
        advantage=args.advantage,
        aggregation=args.aggregation,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        kinds=[kind.strip() for kind in args.kinds.split(",") if kind.strip()],
        num_prompts=args.num_prompts,
    )
    summary = train_rl(
        args.model,
        args.world,
        args.reward,
        args.out,
        config,
        _train_config(args),
        reference_dir=args.reference,
        resume=args.resume,
    )
    first, last, result = summary["first_step"], summary["last_step"], summary["result"]
    rewards = (
        f"reward mean {first['reward_mean']:.3f} (step {first['step']}) -> "
        f"{last['reward_mean']:.3f}, KL {last['kl']:.4f}; "
        if first and last
        else "no steps left to run; "
    )
    console.print(
        f"{config.advantage} on {summary['num_prompts']} prompts, reward {summary['reward']}: "
        f"{result['steps']} steps; {rewards}model in {result['final_dir']}"
    )
    return 0
