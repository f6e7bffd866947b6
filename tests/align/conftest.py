"""A small English world shared by the alignment tests (generated once per session)."""

from __future__ import annotations

import pytest

from ocelli.world import QUICKSTART_WORLD, generate_dataset


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
