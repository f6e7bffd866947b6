"""Exact resume: a training process killed with SIGKILL between checkpoints, resumed from
its last checkpoint, must produce the same per-step losses and weights as a run that was
never interrupted. The tiny model has dropout, so the RNG state is part of what must be
restored."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ocelli.train.progress import read_metrics

SCRIPT = Path(__file__).with_name("tiny_training.py")
CONFIG = {
    "max_steps": 16,
    "batch_size": 4,
    "lr": 1e-2,
    "warmup_steps": 3,
    "save_every": 4,
    "log_every": 1,
    "keep_last": 2,
    "tensorboard": False,
}


def command(out_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(SCRIPT),
        str(out_dir),
        "--config",
        json.dumps(CONFIG),
        "--dropout",
        "0.3",
        *extra,
    ]


def wait_for(predicate, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"training exited early with status {process.returncode}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out waiting for the training process")
        time.sleep(0.1)


@pytest.mark.slow
def test_a_killed_run_resumes_exactly(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    uninterrupted = subprocess.Popen(command(reference), stdout=subprocess.DEVNULL)
    # This one hangs inside step 10's callback: past the step-8 checkpoint, mid-run.
    process = subprocess.Popen(
        command(killed, "--hang-after", "10"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(lambda: (killed / "hanging.txt").exists(), process)
    assert (killed / "checkpoints" / "step-000008").is_dir()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert [r["step"] for r in read_metrics(killed / "metrics.jsonl")][-1] == 9

    subprocess.run(command(killed, "--resume"), check=True, timeout=300, capture_output=True)
    assert uninterrupted.wait(timeout=300) == 0
    expected = read_metrics(reference / "metrics.jsonl")
    resumed = read_metrics(killed / "metrics.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, 17))
    for want, got in zip(expected, resumed, strict=True):
        assert abs(want["loss"] - got["loss"]) <= 1e-6, want["step"]
        assert want["lr"] == got["lr"]
    assert json.loads((killed / "result.json").read_text())["start_step"] == 8
    want_weights = load_file(str(reference / "weights.safetensors"))
    got_weights = load_file(str(killed / "weights.safetensors"))
    for name, tensor in want_weights.items():
        torch.testing.assert_close(got_weights[name], tensor, atol=1e-6, rtol=0)
