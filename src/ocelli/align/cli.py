"""`ocelli align ...`: argument parsing and handlers (the top-level cli.py delegates here)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console


def add_align_parser(sub: argparse._SubParsersAction) -> None:
    align = sub.add_parser("align", help="preference data and alignment tuning (DPO, IPO)")
    align_sub = align.add_subparsers(dest="align_command", required=True)
    data = align_sub.add_parser("data", help="write preference pairs from a world's ground truth")
    data.add_argument("--world", required=True, help="a world split (ocelli world generate)")
    data.add_argument("--out", required=True, help="JSONL file to write")
    data.add_argument(
        "--kinds",
        default=None,
        help="comma-separated: object, attribute, count, relation, answer, negative (default all)",
    )
    data.add_argument("--seed", type=int, default=0)
    data.add_argument(
        "--yes-ratio", type=float, default=0.5, help="share of LRV questions answered yes"
    )
    data.add_argument(
        "--instructions",
        default=None,
        help="also write the LRV negative instructions as LLaVA-format JSON here",
    )


def align_command(args: argparse.Namespace, console: Console) -> int:
    handlers = {"data": _data}
    return handlers[args.align_command](args, console)


def _data(args: argparse.Namespace, console: Console) -> int:
    from ocelli.align.pairs import load_pairs
    from ocelli.align.preference_data import instruction_records, write_preference_data
    from ocelli.utils.io import atomic_write_json

    kinds = args.kinds.split(",") if args.kinds is not None else None
    summary = write_preference_data(args.world, args.out, kinds, args.seed, args.yes_ratio)
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
