"""The commands one after another on a tiny trained model: train -> chat, eval, export,
and quickstart -> report. Two runs are trained once per module: `ocelli train` with a
SigLIP encoder (exportable to Llava) and `ocelli quickstart` with the recipe's default
ConvNeXt encoder (not exportable)."""

import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ocelli
from ocelli.cli import main
from ocelli.train.recipe import STAGES

pytestmark = pytest.mark.slow

SMALL_SIGLIP = (
    "model.vision_overrides={hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 2}"
)
SMALL_CONVNEXT = "model.vision_overrides={hidden_sizes: [16, 32], depths: [1, 1]}"
QUESTION = "How many circles are there?"


@pytest.fixture(scope="module")
def train_args(tiny_recipe_args):
    """The `ocelli train` arguments of the module's run, less --out."""
    command = "train --recipe quickstart --max-steps 2 --vision siglip-tiny".split()
    # every stage, stage 1b (off in the recipe) included
    return [*command, "--set", SMALL_SIGLIP, "--set", "perceive.enabled=true", *tiny_recipe_args]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, train_args):
    """`ocelli train --recipe quickstart --max-steps 2 --vision siglip-tiny`, tiny."""
    out = tmp_path_factory.mktemp("cli-train") / "run"
    assert main([*train_args, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def quickstart_dir(tmp_path_factory, tiny_recipe_args):
    """`ocelli quickstart` with the same tiny world and LM, two steps a stage."""
    out = tmp_path_factory.mktemp("cli-quickstart") / "run"
    steps = [arg for stage in STAGES for arg in ("--set", f"{stage}.train.max_steps=2")]
    overrides = ["--set", SMALL_CONVNEXT, "--set", "eval.limit=8"]
    code = main(["quickstart", "--out", str(out), *tiny_recipe_args, *steps, *overrides])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def world_image(run_dir):
    return run_dir / "world" / "test" / "images" / "test_000000.png"


def test_train_runs_every_stage(run_dir):
    summary = json.loads((run_dir / "train_summary.json").read_text(encoding="utf-8"))
    assert list(summary["stages"]) == list(STAGES)
    assert all(stage["steps"] == 2 for stage in summary["stages"].values())
    for stage in ("text", "align", "instruct", "dpo"):
        assert (run_dir / stage / "final" / "model.safetensors").is_file()
    assert summary["stages"]["dpo"]["pairs"]["num_pairs"] > 0
    recipe = json.loads((run_dir / "instruct" / "recipe.json").read_text(encoding="utf-8"))
    assert recipe["recipe"]["model"]["vision"] == "siglip-tiny"  # the run can be reproduced


def test_the_new_connector_is_calibrated_once_on_the_training_images(run_dir):
    def statistics(stage):
        weights = load_file(run_dir / stage / "final" / "model.safetensors")
        return weights["connector.feature_mean"], weights["connector.feature_std"]

    mean, std = statistics("align")
    assert mean.abs().max() > 0 and not torch.allclose(std, torch.ones_like(std))
    # stage 2 starts from stage 1's connector and keeps its statistics
    assert all(torch.equal(a, b) for a, b in zip(statistics("instruct"), (mean, std), strict=True))


def test_rerun_asks_for_resume_and_resume_finishes_a_killed_run(cli, run_dir, train_args, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    cli(*train_args, "--out", copy).assert_user_error("already holds checkpoints", "--resume")

    shutil.rmtree(copy / "instruct")  # killed before stage 2 saved anything
    result = cli(*train_args, "--out", copy, "--resume")
    assert result.code == 0, result.err
    assert (copy / "instruct" / "final" / "model.safetensors").is_file()
    # The finished stages were not trained again: they resumed at their last step.
    for stage in ("vision", "text", "align"):
        assert len((copy / stage / "metrics.jsonl").read_text().splitlines()) == len(
            (run_dir / stage / "metrics.jsonl").read_text().splitlines()
        )


def test_own_data_and_local_checkpoints(cli, run_dir, tmp_path):
    """docs/howto.md: LLaVA-format files and local encoder/LM/tokenizer directories,
    without the world and without stage 0 (the checkpoints here come from run_dir)."""
    out = tmp_path / "own"
    world = run_dir / "world" / "train"
    overrides = [
        f"model.tokenizer={run_dir / 'tokenizer'}",
        "vision.enabled=false",
        "text.enabled=false",
        *[f"world.{split}_images=0" for split in ("train", "val", "test", "cogent")],
        f"align.data={world / 'describe.json'}",
        f"instruct.data={world / 'conversations.json'}",
        "align.train.batch_size=8",
        "instruct.train.batch_size=8",
        "dpo.enabled=false",  # its pairs come from a world (or a file given as dpo.data)
        "perceive.enabled=false",  # its questions too (or a file given as perceive.data)
    ]
    vision, language_model = run_dir / "vision" / "encoder", run_dir / "text" / "final"
    result = cli(
        "train", "--recipe", "quickstart", "--out", out, "--max-steps", 1,
        "--vision", vision, "--language-model", language_model,
        *[arg for item in overrides for arg in ("--set", item)],
    )  # fmt: skip
    assert result.code == 0, result.err
    assert sorted(path.name for path in out.iterdir()) == [
        "align",
        "instruct",
        "train_summary.json",
    ]
    assert (out / "instruct" / "final" / "model.safetensors").is_file()


def test_chat_prints_the_models_answer(cli, run_dir, world_image):
    from ocelli.generate import load

    model = run_dir / "instruct" / "final"
    result = cli("chat", "--model", model, "--image", world_image, QUESTION)
    assert result.code == 0, result.err
    # Two training steps teach little; the point is that the CLI prints what the model says.
    assert result.out == load(model).chat([world_image], QUESTION, max_new_tokens=64) + "\n"


def test_chat_reads_a_conversation_from_stdin(cli, run_dir, world_image, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{QUESTION}\n/exit\n"))
    model = run_dir / "instruct" / "final"
    result = cli("chat", "--model", model, "--image", world_image, "--max-new-tokens", 4)
    assert result.code == 0, result.err
    assert result.out.startswith("ocelli chat with 1 image(s).")


def test_eval_writes_results(cli, run_dir, tmp_path):
    model, data, out = run_dir / "instruct" / "final", run_dir / "world" / "test", tmp_path / "eval"
    result = cli("eval", "--model", model, "--data", data, "--limit", 8, "--out", out)
    assert result.code == 0, result.err
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["tasks"]["world_vqa"]["num_scored"] == 8
    assert 0.0 <= results["tasks"]["world_vqa"]["metrics"]["accuracy"] <= 1.0
    assert results["provenance"]["ocelli_version"] == ocelli.__version__


def test_chat_and_eval_take_a_checkpoint_step_directory(cli, run_dir, world_image, tmp_path):
    step = run_dir / "instruct" / "checkpoints" / "step-000002"
    result = cli("chat", "--model", step, "--image", world_image, "--max-new-tokens", 4, QUESTION)
    assert result.code == 0, result.err
    pipeline = ocelli.load(step / "model")
    assert result.out == pipeline.chat([world_image], QUESTION, max_new_tokens=4) + "\n"
    data, out = run_dir / "world" / "test", tmp_path / "eval"
    result = cli("eval", "--model", step, "--data", data, "--limit", 4, "--out", out)
    assert result.code == 0, result.err
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["tasks"]["world_vqa"]["num_scored"] == 4


def test_a_text_stage_checkpoint_loads_with_the_transformers_auto_classes(run_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir = run_dir / "text" / "checkpoints" / "step-000002" / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    prompt = tokenizer(QUESTION, return_tensors="pt").input_ids
    output = model.generate(prompt, max_new_tokens=3, do_sample=False)
    assert output.shape[1] > prompt.shape[1]
    assert len(tokenizer) == len(AutoTokenizer.from_pretrained(run_dir / "text" / "final"))


def test_eval_on_a_directory_that_is_not_a_split(cli, run_dir, tmp_path):
    result = cli("eval", "--model", run_dir / "instruct" / "final", "--data", run_dir / "world")
    result.assert_user_error("questions.jsonl not found")


def test_export_siglip_model_to_llava(cli, run_dir, tmp_path):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    out = tmp_path / "export"
    result = cli(
        "export", "--model", run_dir / "instruct" / "final", "--format", "llava-hf", "--out", out
    )
    assert result.code == 0, result.err
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["architectures"] == ["LlavaForConditionalGeneration"]
    assert config["vision_config"]["model_type"] == "siglip_vision_model"
    # The tokenizer travels with the weights, so vLLM and AutoProcessor can load the export.
    assert (out / "tokenizer.json").is_file()
    assert type(AutoProcessor.from_pretrained(out)).__name__ == "LlavaProcessor"
    LlavaForConditionalGeneration.from_pretrained(out)


def test_quickstart_writes_report_and_metrics(quickstart_dir):
    report = (quickstart_dir / "report.html").read_text(encoding="utf-8")
    assert "ocelli quickstart" in report
    metrics = json.loads((quickstart_dir / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["evaluation"]) == {"test", "cogent-b"}
    assert all(split["num_questions"] == 8 for split in metrics["evaluation"].values())
    assert metrics["recipe"]["eval"]["limit"] == 8
    hallucination = metrics["hallucination"]
    assert set(hallucination) == {"pope_random", "pope_popular", "pope_adversarial", "chair"}
    assert all(
        0 <= hallucination[f"pope_{kind}"]["yes_ratio"] <= 1
        for kind in ("random", "popular", "adversarial")
    )
    assert 0 <= hallucination["chair"]["chair_i"] <= 1
    assert (quickstart_dir / "eval" / "hallucination" / "report.html").is_file()
    # the aligned (stage 3) model is evaluated beside the SFT one
    aligned = metrics["aligned"]
    assert aligned["model"] == "dpo/final" and set(aligned["evaluation"]) == {"test", "cogent-b"}
    assert set(aligned["hallucination"]) == set(hallucination)
    measures = {row["measure"] for row in metrics["sft_vs_aligned"]}
    assert {"VQA accuracy, test", "pope_adversarial f1", "chair chair_i"} <= measures
    assert "SFT vs aligned" in report
    # the recipe's benchmark suite, for both models (a tiny world may not pose every task)
    suite, aligned_suite = metrics["suite"], aligned["suite"]
    assert list(suite) == metrics["recipe"]["eval"]["suite"] == list(aligned_suite)
    assert suite["mme"]["scoring"] == "loglik" and 0 <= suite["mme"]["acc"] <= 100
    assert suite["caption"]["scoring"] == "generate" and "cider" in suite["caption"]
    assert {"precision", "recall"} <= set(suite["faith"])
    assert "circular_accuracy" in suite["mmbench_circular"]
    assert "Benchmark suite" in report
    assert (quickstart_dir / "eval" / "dpo" / "suite" / "mme" / "report.html").is_file()
    assert (quickstart_dir / "eval" / "dpo" / "hallucination" / "report.html").is_file()
    provenance = metrics["provenance"]
    assert provenance["ocelli_version"] == ocelli.__version__
    commit = provenance["git_commit"]  # None only outside a git checkout
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit)


def test_export_of_the_default_convnext_model_is_refused(quickstart_dir, tmp_path):
    """Through the installed entry point: exit status 2, the reason, no traceback."""
    out = tmp_path / "export"
    entry_point = Path(sys.executable).with_name("ocelli")
    done = subprocess.run(
        [
            str(entry_point),
            "export",
            "--model",
            str(quickstart_dir / "instruct" / "final"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: export_llava_hf supports"), done.stderr
    assert "vision encoder 'convnext'" in done.stderr
    assert not out.exists()
