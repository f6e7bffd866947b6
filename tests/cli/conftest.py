"""Shared by the CLI tests: run `ocelli ...` in-process and capture what it prints, and
the `--set` overrides that shrink the quickstart recipe to a few seconds of training."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ocelli.cli import main

# The quickstart recipe with a 64-image English world, one-layer LM and small batches.
# Stage step counts are capped by `--max-steps` (train) or the *.train.max_steps keys
# (quickstart, which has no --max-steps).
TINY_RECIPE = [
    "world.train_images=64",
    "world.val_images=0",
    "world.test_images=4",
    "world.cogent_images=4",
    "world.langs=[en]",
    "model.language_model_overrides={hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 2}",
    "vision.train.batch_size=8",
    "text.train.batch_size=8",
    "align.train.batch_size=8",
    "perceive.train.batch_size=8",
    "instruct.train.batch_size=8",
]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second thread; on a busy 2-core machine OpenMP's
    spinning threads made the 2-step training runs here 10x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def assert_user_error(self, *fragments: str) -> None:
        """Exit status 2 and an `error: ...` message naming `fragments`, no traceback."""
        assert self.code == 2, self
        assert self.err.startswith("error: "), self.err
        assert "Traceback" not in self.err
        for fragment in fragments:
            assert fragment in self.err, f"{fragment!r} not in {self.err!r}"


@pytest.fixture
def cli(capsys):
    """`cli("world", "show", path)` runs `ocelli world show PATH` and returns a CliResult;
    argparse errors raise SystemExit as they do for the real command."""

    def run(*argv: object) -> CliResult:
        capsys.readouterr()  # drop anything printed before this command
        code = main([str(arg) for arg in argv])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


@pytest.fixture(scope="session")
def tiny_recipe_args() -> list[str]:
    """TINY_RECIPE as command-line arguments: ["--set", "world.train_images=64", ...]."""
    return [arg for item in TINY_RECIPE for arg in ("--set", item)]
