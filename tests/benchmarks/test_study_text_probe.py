"""The text probe asks a text-stage LM the test questions from the exact description;
it runs end to end on a tiny run (learning is not asserted) and refuses a run without
a saved LM."""

import json

import pytest
import study_text_probe

from ocelli.cli import main as ocelli_main
from ocelli.errors import ConfigError

TINY_TEXT_RUN = [
    "world.train_images=8",
    "world.val_images=2",
    "world.test_images=3",
    "world.cogent_images=2",
    "text.train.batch_size=2",
    "text.train.save_every=1",
    "text.train.keep_last=0",
    "model.language_model_overrides={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2}",
]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("text-run")
    argv = ["train", "--recipe", "quickstart", "--out", str(run_dir), "--stage", "text"]
    argv += ["--max-steps", "2"]
    for setting in TINY_TEXT_RUN:
        argv += ["--set", setting]
    assert ocelli_main(argv) == 0
    return run_dir


def test_every_checkpoint_of_the_text_stage_is_probed_in_step_order(text_run, tmp_path):
    out, docs = tmp_path / "probe.json", tmp_path / "benchmarks.md"
    argv = ["--threads", "1", "--out", str(out), "--docs", str(docs)]
    study_text_probe.main(argv + ["--set", f"run_dir={text_run}", "--set", "limit=6"])
    record = json.loads(out.read_text())
    curve = record["results"]["curve"]
    assert [point["step"] for point in curve] == ["1", "2", "final"]
    for point in curve:
        assert 0.0 <= point["accuracy"] <= 1.0
        assert set(point["per_phrasing"]) <= {"seen", "held-out"}
    assert record["results"]["recipe"]["recipe"]["name"] == "quickstart"
    assert 0.0 <= record["results"]["blind_accuracy"] <= 1.0
    assert "Text probe" in docs.read_text()


def test_a_run_without_a_saved_language_model_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no saved language model in .*ocelli train --stage text"):
        study_text_probe.main(
            ["--out", str(tmp_path / "x.json"), "--no-docs", "--set", f"run_dir={tmp_path}"]
        )
