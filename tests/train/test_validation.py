"""Validation while training (ocelli.train.validation): records at the right steps, a
training that does not notice it ran, a resume that reproduces it, the skip without
val data, the recipe checks and the figures."""

import json
import random
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_training import make_model, train_tiny, weights

from ocelli.errors import ConfigError
from ocelli.train.plots import plot_loss_curves, plot_val_accuracy
from ocelli.train.progress import read_metrics
from ocelli.train.recipe import load_recipe
from ocelli.train.validation import Evaluation

# The quickstart recipe shrunk to seconds: no stage 0, a 16-image English world with a
# 4-image val split, one-layer LM, a few steps of stages 1 and 2 with validation.
TINY = [
    "world.train_images=16",
    "world.val_images=4",
    "world.test_images=0",
    "world.cogent_images=0",
    "world.langs=[en]",
    "model.vision_overrides={patch_size: 8, hidden_sizes: [16, 32], depths: [1, 1]}",
    "model.language_model_overrides={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2}",
    "vision.enabled=false",
    "text.enabled=false",
    "dpo.enabled=false",
    "perceive.enabled=false",
    "align.train={lr: 2.0e-3, max_steps: 3, batch_size: 4, log_every: 1, tensorboard: false}",
    "instruct.train={lr: 1.0e-3, max_steps: 5, batch_size: 4, log_every: 1, save_every: 2,"
    " keep_last: 0, tensorboard: false}",
    "align.eval_every=2",
    "instruct.eval_every=2",
    "instruct.eval_questions=6",
    "eval.batch_size=8",
    "eval.max_new_tokens=4",
]
INSTRUCT_KEYS = {
    "step",
    "val_loss",
    "val_conversations",
    "val_accuracy",
    "val_blind_accuracy",
    "val_accuracy_by_type",
    "val_questions",
    "val_seconds",
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _train(out, overrides=(), stages=("align", "instruct"), resume=False):
    from ocelli.train.runners import run_recipe

    recipe = load_recipe("quickstart", [*TINY, *overrides])
    return run_recipe(recipe, out, stages=list(stages), resume=resume, progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The tiny run with validation, and the same run without it on a copy of its world."""
    root = tmp_path_factory.mktemp("validation")
    _train(root / "on")
    for shared in ("world", "tokenizer"):
        shutil.copytree(root / "on" / shared, root / "off" / shared)
    _train(root / "off", ["align.eval_every=0", "instruct.eval_every=0"])
    return root


def _losses(path):
    return [(r["step"], r["loss"], r["grad_norm"], r["lr"]) for r in _training(path)]


def _validation(path):
    return [r for r in read_metrics(path) if "val_loss" in r]


def _training(path):
    return [r for r in read_metrics(path) if "loss" in r]


def test_records_at_every_eval_every_steps_and_the_last(runs):
    align = _validation(runs / "on" / "align" / "metrics.jsonl")
    instruct = _validation(runs / "on" / "instruct" / "metrics.jsonl")
    assert [r["step"] for r in align] == [2, 3]
    assert [r["step"] for r in instruct] == [2, 4, 5]
    # align is scored on its captions (describe.json): a loss, no accuracy
    assert set(align[0]) == {"step", "val_loss", "val_conversations", "val_seconds"}
    for record in instruct:
        assert set(record) == INSTRUCT_KEYS
        assert record["val_questions"] == 6 and 0 <= record["val_accuracy"] <= 1
        assert set(record["val_accuracy_by_type"]) <= {
            "attribute", "comparison", "count", "existence", "extreme", "reasoning", "spatial"
        }  # fmt: skip
    # the same questions every time: the blind line does not move
    assert len({r["val_blind_accuracy"] for r in instruct}) == 1
    assert instruct[0]["val_loss"] != instruct[-1]["val_loss"]


def test_training_is_the_same_with_validation_on_and_off(runs):
    for stage in ("align", "instruct"):
        on = _losses(runs / "on" / stage / "metrics.jsonl")
        off = _losses(runs / "off" / stage / "metrics.jsonl")
        assert on == off
        assert not _validation(runs / "off" / stage / "metrics.jsonl")
    on = load_file(str(runs / "on" / "instruct" / "final" / "model.safetensors"))
    off = load_file(str(runs / "off" / "instruct" / "final" / "model.safetensors"))
    assert all(torch.equal(on[name], off[name]) for name in on)


def test_a_resumed_run_reproduces_losses_and_validation(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs / "on", run)
    # as if stage 2 had been killed after its step-2 checkpoint
    for dead in ("step-000004", "step-000005"):
        shutil.rmtree(run / "instruct" / "checkpoints" / dead)
    shutil.rmtree(run / "instruct" / "final")
    _train(run, stages=["instruct"], resume=True)

    def figures(path):
        return [{k: v for k, v in r.items() if k not in TIMES} for r in read_metrics(path)]

    assert figures(run / "instruct" / "metrics.jsonl") == figures(
        runs / "on" / "instruct" / "metrics.jsonl"
    )


TIMES = ("val_seconds", "elapsed", "samples_per_s", "tokens_per_s", "epoch")


def test_the_accuracy_figure_is_written(runs):
    assert (runs / "on" / "instruct" / "val_accuracy.png").is_file()
    assert not (runs / "on" / "align" / "val_accuracy.png").exists()  # no accuracy there
    assert not (runs / "off" / "instruct" / "val_accuracy.png").exists()


def test_without_val_data_validation_is_skipped_with_a_message(runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(runs / "on" / "tokenizer", run / "tokenizer")
    shutil.copytree(runs / "on" / "world" / "train", run / "world" / "train")
    _train(run, ["world.val_images=0", "instruct.train.max_steps=2"])
    out = capsys.readouterr().out
    assert out.count("validation skipped") == 2  # once per stage
    assert "world.val_images: 0" in out
    assert not _validation(run / "instruct" / "metrics.jsonl")


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("instruct.eval_every=-1", ["instruct", "eval_every must be >= 0", "0 turns"]),
        ("instruct.eval_every=often", ["instruct.eval_every", "expected an integer"]),
        ("align.eval_every=2.5", ["align.eval_every", "expected an integer"]),
        ("instruct.eval_questions=0", ["instruct", "eval_questions must be >= 1"]),
        ("text.eval_every=10", ["text.eval_every", "align and instruct stages only"]),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(override, fragments):
    with pytest.raises(ConfigError) as error:
        load_recipe("quickstart", [override])
    for fragment in fragments:
        assert fragment in str(error.value)


# --- the loop's part, on the tiny regression model ------------------------------------


def _noisy_evaluation(every, seen):
    """An evaluation that draws from every RNG training uses: were they not restored,
    the dropout masks after it would change."""

    def run(model):
        seen.append(model.training)
        torch.rand(5), np.random.rand(5), random.random()
        return {"val_loss": 0.5, "val_accuracy_by_type": {"count": 1.0}}

    return Evaluation(every, run)


def test_the_loop_evaluates_in_eval_mode_and_leaves_training_alone(tmp_path, capsys):
    seen = []
    on, _ = train_tiny(
        tmp_path / "on", model=make_model(dropout=0.3), evaluation=_noisy_evaluation(4, seen)
    )
    off, _ = train_tiny(tmp_path / "off", model=make_model(dropout=0.3))
    assert seen == [False, False] and on.training
    records = read_metrics(tmp_path / "on" / "metrics.jsonl")
    assert [r["step"] for r in records if "val_loss" in r] == [4, 6]
    assert _losses(tmp_path / "on" / "metrics.jsonl") == _losses(tmp_path / "off" / "metrics.jsonl")
    on_weights, off_weights = weights(on), weights(off)
    assert all(torch.equal(on_weights[name], off_weights[name]) for name in on_weights)
    assert "[tiny] step 4 validation: val_loss 0.5000" in capsys.readouterr().out


def test_plots_read_validation_records_without_a_loss(tmp_path):
    metrics = tmp_path / "instruct" / "metrics.jsonl"
    metrics.parent.mkdir()
    lines = [
        {"step": 1, "loss": 2.0, "lr": 1e-3},
        {"step": 2, "loss": 1.5, "lr": 1e-3},
        {"step": 2, "val_loss": 1.8, "val_accuracy": 0.3, "val_blind_accuracy": 0.4},
        {"step": 4, "val_loss": 1.2, "val_accuracy": 0.6, "val_blind_accuracy": 0.4},
    ]
    metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert plot_loss_curves({"instruct": metrics}, tmp_path / "loss.png").is_file()
    assert plot_val_accuracy(tmp_path / "instruct") == tmp_path / "instruct" / "val_accuracy.png"
    metrics.write_text(json.dumps(lines[0]) + "\n")
    (tmp_path / "instruct" / "val_accuracy.png").unlink()
    assert plot_val_accuracy(tmp_path / "instruct") is None
    assert not (tmp_path / "instruct" / "val_accuracy.png").exists()


def test_the_report_shows_the_accuracy_figure_beside_the_loss_curves(runs, tmp_path):
    from ocelli.report import write_run_report

    loss_png = plot_loss_curves(
        {"instruct": runs / "on" / "instruct" / "metrics.jsonl"}, tmp_path / "loss.png"
    )
    validation_pngs = {
        stage: runs / "on" / stage / "val_accuracy.png" for stage in ("align", "instruct")
    }
    report = write_run_report(
        tmp_path / "report.html", "t", {}, loss_png, {}, [], "", validation_pngs
    )
    page = report.read_text(encoding="utf-8")
    assert "Loss and validation curves" in page
    assert page.count("<img") == 2  # the loss curves and instruct's accuracy; align has none


def test_every_checkpoint_of_a_multimodal_stage_loads_and_answers(runs):
    """Each step's model/ holds the processor, so ocelli.load (and chat, eval) take the
    step directory itself."""
    import ocelli
    from ocelli.eval.backends import LocalBackend

    steps = sorted((runs / "on" / "instruct" / "checkpoints").glob("step-*"))
    assert [step.name for step in steps] == ["step-000002", "step-000004", "step-000005"]
    image = next((runs / "on" / "world" / "train" / "images").glob("*.png"))
    for step in steps:
        pipeline = ocelli.load(step)
        assert isinstance(
            pipeline.chat(image, "How many objects are there?", max_new_tokens=3), str
        )
    backend = LocalBackend(steps[0])  # `ocelli eval --model STEP` hashes model/'s files
    assert backend.model_dir == steps[0] / "model"
    assert backend.identity()["weights_hash"] is not None


def test_an_older_checkpoint_without_the_processor_names_the_files_to_copy(runs, tmp_path):
    import ocelli
    from ocelli.errors import CheckpointError
    from ocelli.generate import OcelliPipeline

    stage = tmp_path / "run" / "instruct"
    shutil.copytree(runs / "on" / "instruct" / "final", stage / "final")
    step = stage / "checkpoints" / "step-000002"
    (step / "model").mkdir(parents=True)
    source = runs / "on" / "instruct" / "checkpoints" / "step-000002" / "model"
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(source / name, step / "model" / name)  # what checkpoints held before
    files = [
        "chat_template.jinja",
        "ocelli_processor.json",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    with pytest.raises(CheckpointError) as caught:
        ocelli.load(step)
    assert f"copy {', '.join(files)} from {stage / 'final'} into it" in str(caught.value)

    for name in files:  # doing what the message says makes it load
        shutil.copy(stage / "final" / name, step / "model" / name)
    assert isinstance(ocelli.load(step), OcelliPipeline)
