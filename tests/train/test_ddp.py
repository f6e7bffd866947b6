"""Two CPU processes under torchrun (DDP over gloo) against one process with the same
global batch: the data order and the averaged gradients make them train the same model."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_training import train_tiny, weights

from ocelli.train.progress import read_metrics

SCRIPT = Path(__file__).with_name("tiny_training.py")
BASE = {
    "max_steps": 6,
    "lr": 1e-2,
    "log_every": 1,
    "save_every": 3,
    "keep_last": 0,
    "tensorboard": False,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(
    out_dir: Path,
    num_processes: int,
    dropout: float = 0.0,
    resume: bool = False,
    eval_every: int = 0,
    **fields,
) -> None:
    args = [
        str(SCRIPT),
        str(out_dir),
        "--config",
        json.dumps({**BASE, **fields}),
        "--dropout",
        str(dropout),
        *(["--resume"] if resume else []),
        *(["--eval-every", str(eval_every)] if eval_every else []),
    ]
    if num_processes > 1:
        args = [
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(num_processes),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            *args,
        ]
    # On CPU even where a GPU is present: two ranks cannot share one GPU under NCCL.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def losses(out_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(out_dir / "metrics.jsonl") if "loss" in r]


def assert_same_weights(a: Path, b: Path, atol: float) -> None:
    first = load_file(str(a / "weights.safetensors"))
    second = load_file(str(b / "weights.safetensors"))
    for name, tensor in first.items():
        torch.testing.assert_close(second[name], tensor, atol=atol, rtol=0, msg=name)


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path):
    run(tmp_path / "ddp", 2, batch_size=2)
    rng = json.loads((tmp_path / "ddp" / "checkpoints" / "step-000003" / "rng.json").read_text())
    assert rng["num_processes"] == 2
    ddp_weights = load_file(str(tmp_path / "ddp" / "weights.safetensors"))
    # One process, in this one: the global batch of 4 as one batch or as 2 accumulated.
    for name, fields in {
        "single": {"batch_size": 4},
        "accum": {"batch_size": 2, "grad_accum_steps": 2},
    }.items():
        model, _ = train_tiny(tmp_path / name, **{**BASE, **fields})
        assert losses(tmp_path / name) == pytest.approx(losses(tmp_path / "ddp"), abs=1e-5)
        for key, tensor in ddp_weights.items():
            torch.testing.assert_close(weights(model)[key], tensor, atol=1e-5, rtol=0, msg=key)


@pytest.mark.slow
def test_two_processes_resume_exactly(tmp_path):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    run(full, 2, dropout=0.3, batch_size=2)
    shutil.copytree(full, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-000006")  # as if killed after step 3's save
    shutil.rmtree(resumed / "final")
    run(resumed, 2, dropout=0.3, batch_size=2, resume=True)
    assert losses(resumed) == pytest.approx(losses(full), abs=1e-6)
    assert_same_weights(full, resumed, atol=1e-6)


@pytest.mark.slow
def test_only_the_main_process_validates_and_training_is_unchanged(tmp_path):
    with_eval, without = tmp_path / "eval", tmp_path / "plain"
    run(with_eval, 2, dropout=0.3, batch_size=2, eval_every=4)
    run(without, 2, dropout=0.3, batch_size=2)
    records = [r for r in read_metrics(with_eval / "metrics.jsonl") if "val_loss" in r]
    assert [(r["step"], r["rank"]) for r in records] == [(4, 0), (6, 0)]
    assert losses(with_eval) == losses(without)
    assert_same_weights(with_eval, without, atol=0)
