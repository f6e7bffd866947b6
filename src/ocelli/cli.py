"""The `ocelli` command line. Each subcommand is a thin layer over the library; errors a
user can act on are printed without a traceback and exit with status 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ocelli.errors import OcelliError


def _positive_int(text: str) -> int:
    """argparse type for counts and sizes; argparse prints the message and exits 2."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _add_world(sub: argparse._SubParsersAction) -> None:
    world = sub.add_parser("world", help="generate and look at the embedded visual world")
    world_sub = world.add_subparsers(dest="world_command", required=True)
    gen = world_sub.add_parser("generate", help="write a world dataset (images, scenes, Q&A)")
    gen.add_argument("--out", required=True, help="output directory")
    gen.add_argument("--num-images", type=int, required=True)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument(
        "--split",
        default="train",
        help="train, val, test or another lower-case name; it picks the random "
        "stream, not the CoGenT condition (that is --set cogent=A or B)",
    )
    gen.add_argument("--mode", default=None, choices=["default", "sort-of-clevr"])
    gen.add_argument("--lang", default=None, help="comma-separated languages: en, zh (default en)")
    gen.add_argument("--image-size", type=int, default=None)
    gen.add_argument("--config", default=None, help="YAML file with WorldConfig fields")
    gen.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a WorldConfig field",
    )
    show = world_sub.add_parser("show", help="write an HTML contact sheet of samples")
    show.add_argument("data_dir")
    show.add_argument("--out", default=None, help="HTML path (default DATA_DIR/contact_sheet.html)")
    show.add_argument("--num-images", type=int, default=16)


def _add_train(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a model through the recipe's stages")
    train.add_argument("--recipe", default="quickstart", help="recipe name or YAML path")
    train.add_argument("--out", required=True, help="run directory")
    train.add_argument(
        "--stage",
        action="append",
        default=None,
        help="run only this stage (repeatable): vision, text, align, perceive, instruct, dpo",
    )
    train.add_argument(
        "--max-steps", type=_positive_int, default=None, help="cap every stage's steps"
    )
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoints")
    train.add_argument("--vision", default=None, help="vision encoder preset or local HF dir")
    train.add_argument("--language-model", default=None, help="LM preset or local HF dir")
    train.add_argument("--connector", default=None, help="connector name (ocelli list connectors)")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any recipe field, e.g. instruct.train.lr=1e-3",
    )
    quick = sub.add_parser("quickstart", help="world -> stage 0/1/2 -> evaluation -> report")
    quick.add_argument("--out", default="runs/quickstart")
    quick.add_argument("--recipe", default="quickstart")
    quick.add_argument("--resume", action="store_true")
    quick.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")


def _add_use(sub: argparse._SubParsersAction) -> None:
    chat = sub.add_parser("chat", help="ask a model about images (interactive without a question)")
    chat.add_argument("--model", required=True)
    chat.add_argument("--image", action="append", default=[], help="image path (repeatable)")
    chat.add_argument("question", nargs="?", default=None)
    chat.add_argument("--max-new-tokens", type=_positive_int, default=64)
    chat.add_argument("--temperature", type=float, default=0.0)
    chat.add_argument(
        "--correct",
        action="store_true",
        help="check the answer against the last image (detector + the model's own yes/no "
        "answers) and rewrite it with boxes (Woodpecker-style; world images only)",
    )
    export = sub.add_parser("export", help="export a model for other engines (vLLM, transformers)")
    export.add_argument("--model", required=True)
    export.add_argument("--format", default="llava-hf", choices=["llava-hf"])
    export.add_argument("--out", required=True)
    export.add_argument(
        "--vision-keys",
        choices=["legacy", "transformers5"],
        default="legacy",
        help="vision tower weight names: legacy (vision_tower.vision_model.*, what vLLM and "
        "transformers 4 and 5 load; the default) or transformers5 (vision_tower.*, what "
        "transformers 5 itself saves)",
    )
    _add_eval(sub)
    listing = sub.add_parser("list", help="print what is registered")
    listing.add_argument("what", choices=["connectors", "encoders", "language-models", "recipes"])


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from ocelli.eval.cli import add_eval_parser

    add_eval_parser(sub, _positive_int, _positive_float)


def _add_serve(sub: argparse._SubParsersAction) -> None:
    from ocelli.serve.cli import add_serve_parser

    add_serve_parser(sub, _positive_int, _positive_float)


def _add_align(sub: argparse._SubParsersAction) -> None:
    from ocelli.align.cli import add_align_parser

    add_align_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    from ocelli import __version__

    parser = argparse.ArgumentParser(
        prog="ocelli",
        description=(
            "Build, train, evaluate and serve multimodal LLMs. `ocelli quickstart` trains one "
            "from scratch on the embedded world."
        ),
    )
    parser.add_argument("--version", action="version", version=f"ocelli {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_world(sub)
    _add_train(sub)
    _add_use(sub)
    _add_serve(sub)
    _add_align(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from ocelli import commands

        return int(commands.dispatch(args) or 0)
    except OcelliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
