"""Handlers behind the `ocelli` subcommands (argument parsing lives in cli.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

console = Console()


def dispatch(args: argparse.Namespace) -> int:
    handler = HANDLERS[args.command]
    return handler(args) or 0


def world(args: argparse.Namespace) -> int:
    from ocelli.world.cli import generate_command, show_command

    if args.world_command == "generate":
        generate_command(
            out=args.out,
            num_images=args.num_images,
            seed=args.seed,
            split=args.split,
            mode=args.mode,
            langs=[x.strip() for x in args.lang.split(",") if x.strip()] if args.lang else None,
            image_size=args.image_size,
            config_path=args.config,
            overrides=args.set,
        )
    else:
        show_command(data_dir=args.data_dir, out=args.out, num_images=args.num_images)
    return 0


def _recipe_from_args(args: argparse.Namespace):
    from ocelli.train.recipe import load_recipe

    overrides = list(args.set)
    for flag, key in (
        ("vision", "model.vision"),
        ("language_model", "model.language_model"),
        ("connector", "model.connector"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            overrides.append(f"{key}={value}")
    return load_recipe(args.recipe, overrides)


def train(args: argparse.Namespace) -> int:
    from ocelli.train.runners import run_recipe

    recipe = _recipe_from_args(args)
    result = run_recipe(
        recipe, args.out, stages=args.stage, resume=args.resume, max_steps=args.max_steps
    )
    console.print(f"trained stages {', '.join(result['stages'])} into {args.out}")
    return 0


def quickstart(args: argparse.Namespace) -> int:
    from ocelli.train.quickstart import run_quickstart

    recipe = _recipe_from_args(args)
    result = run_quickstart(recipe, args.out, resume=args.resume)
    for split, metrics in result["metrics"]["evaluation"].items():
        console.print(
            f"{split}: exact-match accuracy {metrics['accuracy']:.3f} "
            f"({metrics['num_questions']} questions)"
        )
    console.print(f"total time {result['metrics']['timings_s']['total']:.0f} s")
    console.print(f"report: {Path(result['report']).resolve()}")
    return 0


def chat(args: argparse.Namespace) -> int:
    from ocelli.generate.chat_cli import chat_command

    return (
        chat_command(
            args.model,
            args.image,
            question=args.question,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
        )
        or 0
    )


def export(args: argparse.Namespace) -> int:
    from ocelli.model import export_llava_hf

    out = export_llava_hf(args.model, args.out)
    console.print(f"exported {args.model} as {args.format} to {out}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from ocelli.eval.world_vqa import evaluate_world_vqa
    from ocelli.generate import load
    from ocelli.utils import atomic_write_json, provenance

    result = evaluate_world_vqa(
        load(args.model), args.data, limit=args.limit, batch_size=args.batch_size
    )
    console.print(json.dumps(result.metrics, indent=2, ensure_ascii=False))
    if args.out:
        atomic_write_json(
            Path(args.out) / "results.json",
            {
                "metrics": result.metrics,
                "model": args.model,
                "data": args.data,
                "provenance": provenance(),
            },
        )
    return 0


def listing(args: argparse.Namespace) -> int:
    if args.what == "recipes":
        from ocelli.train.recipe import available_recipes

        names = available_recipes()
    else:
        from ocelli.model import registry

        names = {
            "connectors": registry.CONNECTORS,
            "encoders": registry.ENCODERS,
            "language-models": registry.LANGUAGE_MODELS,
        }[args.what].names()
    for name in names:
        console.print(name)
    return 0


HANDLERS = {
    "world": world,
    "train": train,
    "quickstart": quickstart,
    "chat": chat,
    "export": export,
    "eval": evaluate,
    "list": listing,
}
