"""Handlers behind the `ocelli` subcommands (argument parsing lives in cli.py)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

if TYPE_CHECKING:
    from ocelli.train.recipe import Recipe

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


def _recipe_from_args(args: argparse.Namespace) -> Recipe:
    from ocelli.train.recipe import load_recipe

    cleared, chosen = [], []
    for flag, key, preset_overrides in (
        ("vision", "model.vision", "model.vision_overrides"),
        ("language_model", "model.language_model", "model.language_model_overrides"),
        ("connector", "model.connector", None),
    ):
        value = getattr(args, flag, None)
        if value is None:
            continue
        chosen.append(f"{key}={value}")
        if preset_overrides and Path(value).expanduser().is_dir():
            # A checkpoint brings its own config; the recipe's overrides of its preset
            # (the quickstart's ConvNeXt widths) cannot apply. --set may still give some.
            cleared.append(f"{preset_overrides}={{}}")
    recipe = load_recipe(args.recipe, cleared + list(args.set) + chosen)
    _check_model_names(recipe)
    return recipe


def _check_model_names(recipe: Recipe) -> None:
    """Fail on a misspelt connector, encoder or LM before anything is generated or
    trained; the runners only build the full model in stage 1, after stage 0 trained."""
    from ocelli.errors import CheckpointError
    from ocelli.model import CONNECTORS, LANGUAGE_MODELS, VISION_ENCODERS

    CONNECTORS.get(recipe.model.connector)
    for what, spec, registry in (
        ("vision encoder", recipe.model.vision, VISION_ENCODERS),
        ("language model", recipe.model.language_model, LANGUAGE_MODELS),
    ):
        path = Path(spec).expanduser()
        if spec in registry or path.is_dir():
            continue
        if os.sep in spec or spec.startswith((".", "~")):
            raise CheckpointError(f"{what} checkpoint directory {path} does not exist")
        registry.get(spec)  # raises RegistryError listing the registered names


def train(args: argparse.Namespace) -> int:
    from ocelli.train.runners import run_recipe

    recipe = _recipe_from_args(args)
    result = run_recipe(
        recipe, args.out, stages=args.stage, resume=args.resume, max_steps=args.max_steps
    )
    if int(os.environ.get("RANK", "0")) == 0:  # once, not once per torchrun process
        console.print(f"trained stages {', '.join(result['stages'])} into {args.out}")
    return 0


def quickstart(args: argparse.Namespace) -> int:
    from ocelli.train.quickstart import run_quickstart
    from ocelli.train.quickstart_suite import summary_lines

    recipe = _recipe_from_args(args)
    result = run_quickstart(recipe, args.out, resume=args.resume)
    for split, metrics in result["metrics"]["evaluation"].items():
        console.print(
            f"{split}: exact-match accuracy {metrics['accuracy']:.3f} "
            f"({metrics['num_questions']} questions)"
        )
    for line in summary_lines(result["metrics"]):
        console.print(line, markup=False)
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
            correct=args.correct,
        )
        or 0
    )


def _quiet_model_loading() -> None:
    """No "Loading weights" bars from transformers around a command's own output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def export(args: argparse.Namespace) -> int:
    from ocelli.model import export_llava_hf

    _quiet_model_loading()
    # The processor is saved beside the model; without its tokenizer files the export
    # would not load in vLLM or AutoProcessor.
    has_processor = (Path(args.model) / "tokenizer_config.json").is_file()
    # Legacy vision keys by default: vLLM's Llava loader finds the vision tower only under
    # vision_tower.vision_model.*, and transformers 5 loads that form too.
    out = export_llava_hf(
        args.model,
        args.out,
        processor_dir=args.model if has_processor else None,
        legacy_vision_keys=args.vision_keys == "legacy",
    )
    console.print(f"exported {args.model} as {args.format} to {out}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from ocelli.eval.cli import eval_command

    _quiet_model_loading()
    return eval_command(args, console)


def listing(args: argparse.Namespace) -> int:
    if args.what == "recipes":
        from ocelli.train.recipe import available_recipes

        names = available_recipes()
    else:
        from ocelli.model import CONNECTORS, LANGUAGE_MODELS, VISION_ENCODERS

        names = {
            "connectors": CONNECTORS,
            "encoders": VISION_ENCODERS,
            "language-models": LANGUAGE_MODELS,
        }[args.what].names()
    for name in names:
        console.print(name)
    return 0


def serve(args: argparse.Namespace) -> int:
    from ocelli.serve.cli import serve_command

    _quiet_model_loading()
    return serve_command(args)


def align(args: argparse.Namespace) -> int:
    from ocelli.align.cli import align_command

    _quiet_model_loading()
    return align_command(args, console)


HANDLERS = {
    "world": world,
    "train": train,
    "quickstart": quickstart,
    "chat": chat,
    "export": export,
    "eval": evaluate,
    "list": listing,
    "serve": serve,
    "align": align,
    "ui": serve,  # the same server; its page is the point, and its port is Gradio's
}
