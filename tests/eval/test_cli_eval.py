"""`ocelli eval` from the command line: listing, running, comparing, bad input (exit 2,
one-line error, no traceback), and resuming a run killed with SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ocelli.eval.harness import evaluate


def test_list_shows_every_task(cli):
    result = cli("eval", "--list")
    assert result.code == 0
    for name in (
        "world_vqa",
        "pope_adversarial",
        "mme",
        "mmbench_circular",
        "chair",
        "faith",
        "caption",
    ):
        assert name in result.out


def test_run_and_compare(cli, model_dir, world_dir, tmp_path):
    out = tmp_path / "run"
    args = ["--model", model_dir, "--data", world_dir, "--limit", 6, "--batch-size", 3]
    result = cli("eval", *args, "--tasks", "pope_random,mme", "--out", out)
    assert result.code == 0, result.err
    assert "| pope_random | f1 |" in result.out and "| mme | total_score |" in result.out
    assert {p.name for p in out.iterdir()} >= {
        "results.json",
        "results.md",
        "report.html",
        "samples",
        "run.json",
    }
    compared = cli("eval", "compare", out, out)
    assert compared.code == 0 and "| mme | total_score |" in compared.out


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["--tasks", "world_vqa,nope"], ["unknown task 'nope'", "registered tasks"]),
        (["--tasks", "missing/task.yaml"], ["task file missing/task.yaml not found"]),
        (["--model", None], ["--model is required"]),
        (["--retries", "-1"], ["--retries must be 0 or more"]),
        (["--data", "{tmp}"], ["questions.jsonl not found"]),
    ],
)
def test_bad_input_is_a_clear_error(cli, world_dir, tmp_path, argv, fragments):
    options = {
        "--model": str(tmp_path / "no-model"),
        "--data": str(world_dir),
        "--tasks": "world_vqa",
    }
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        options[flag] = value.replace("{tmp}", str(tmp_path)) if value else None
    args = [x for flag, value in options.items() if value is not None for x in (flag, value)]
    cli(*["eval", *args, "--out", tmp_path / "out"]).assert_user_error(*fragments)


def test_missing_model_is_reported_after_the_data_is_checked(cli, world_dir, tmp_path):
    cli(
        "eval", "--model", tmp_path / "none", "--data", world_dir, "--tasks", "mme"
    ).assert_user_error("model directory", "not found")


def test_compare_usage_errors(cli, tmp_path):
    cli("eval", "compare", tmp_path).assert_user_error("ocelli eval compare RUN_A RUN_B")
    cli("eval", "frobnicate").assert_user_error("unexpected argument")
    cli("eval", "compare", tmp_path / "a", tmp_path / "b").assert_user_error(
        "results.json not found"
    )


def test_numeric_options_are_checked(cli, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        cli("eval", "--model", tmp_path, "--timeout", "0")
    assert exit_info.value.code == 2
    assert "--timeout: expected a positive number" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_the_same_results(model_dir, world_dir, tmp_path):
    out = tmp_path / "killed"
    command = [
        sys.executable, "-m", "ocelli.cli", "eval", "--model", str(model_dir), "--data", str(world_dir),
        "--tasks", "world_vqa,pope_random", "--limit", "40", "--batch-size", "2", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    samples = out / "samples" / "world_vqa.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if samples.is_file() and samples.read_text().count("\n") >= 6:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = samples.read_text().count("\n")
    assert 6 <= done_before < 40, "the run should have been killed part-way"
    assert not (out / "results.json").exists()

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    straight = evaluate(
        str(model_dir), "world_vqa,pope_random", tmp_path / "straight", world_dir,
        limit=40, batch_size=2, progress=False,
    )  # fmt: skip
    final = json.loads((out / "results.json").read_text())
    for name in ("world_vqa", "pope_random"):
        assert final["tasks"][name]["metrics"] == straight["tasks"][name]["metrics"]
        assert final["tasks"][name]["unit_scores"] == straight["tasks"][name]["unit_scores"]
        assert final["tasks"][name]["num_scored"] == 40
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len({r["id"] for r in records}) == 40  # finished samples were not asked again
