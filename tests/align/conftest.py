"""A small English world shared by the alignment tests (generated once per session)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ocelli.world import QUICKSTART_WORLD, generate_dataset


def _load_generate_conftest():
    path = Path(__file__).parents[1] / "generate" / "conftest.py"
    spec = importlib.util.spec_from_file_location("generate_conftest_for_align", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATE_CONFTEST = _load_generate_conftest()


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory):
    """12 images of the quickstart world: 1 to 4 objects, English only."""
    out = tmp_path_factory.mktemp("align-world") / "train"
    generate_dataset(out, 12, seed=3, split="train", config=QUICKSTART_WORLD, progress=False)
    return out


@pytest.fixture
def run_cli(capsys):
    """`run_cli("align", "data", ...)` -> (exit status, stdout, stderr) of `ocelli ...`."""
    from ocelli.cli import main

    def run(*args):
        code = main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def tiny_model_dir(world_dir, tmp_path_factory):
    """A tiny random model (CLIP-tiny + Llama-tiny) with a tokenizer trained on the
    world's corpus, saved with its processor."""
    lines = (world_dir / "corpus.txt").read_text(encoding="utf-8").splitlines()
    model, processor = GENERATE_CONFTEST.tiny_model_and_processor(lines, vocab_size=400)
    directory = tmp_path_factory.mktemp("align-model")
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def short_pairs(world_dir, tmp_path_factory):
    """Pairs with short answers (wrong answers and LRV questions): quick to train on."""
    from ocelli.align.preference_data import write_preference_data

    out = tmp_path_factory.mktemp("align-pairs") / "pairs.jsonl"
    write_preference_data(world_dir, out, kinds=["answer", "negative"], seed=0)
    return out
