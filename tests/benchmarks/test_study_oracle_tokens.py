"""The oracle-token study runs end to end on a tiny world; learning is not asserted."""

import json

import pytest
import study_oracle_tokens

from ocelli.errors import ConfigError


def test_oracle_study_trains_each_layout_and_writes_its_curves(tmp_path):
    out, docs = tmp_path / "oracle.json", tmp_path / "benchmarks.md"
    argv = ["--threads", "1", "--out", str(out), "--docs", str(docs)]
    for setting in (
        "train_images=12",
        "test_images=4",
        "steps=2",
        "eval_every=1",
        "batch_size=4",
        "hidden_size=32",
        "num_layers=1",
        "num_heads=2",
        "variants=[objects:1e-3, grid:1e-3, blind:1e-3]",
    ):
        argv += ["--set", setting]
    study_oracle_tokens.main(argv)
    variants = json.loads(out.read_text())["results"]["variants"]
    assert [(v["layout"], v["image_tokens"]) for v in variants] == [
        ("objects", 4),
        ("grid", 64),
        ("blind", 4),
    ]
    for variant in variants:
        assert [point["step"] for point in variant["curve"]] == [1, 2]
        assert all(0.0 <= point["accuracy"] <= 1.0 for point in variant["curve"])
    assert "Oracle image tokens" in docs.read_text()


def test_an_unknown_layout_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="layout must be one of objects, grid, blind"):
        study_oracle_tokens.main(
            ["--out", str(tmp_path / "x.json"), "--no-docs", "--set", "variants=[pixels:1e-3]"]
        )


def test_question_types_that_the_world_does_not_ask_are_refused(tmp_path):
    argv = ["--out", str(tmp_path / "x.json"), "--no-docs"]
    for setting in ("train_images=4", "test_images=2", "question_types=[ocr]"):
        argv += ["--set", setting]
    with pytest.raises(ConfigError, match=r"no questions of types \['ocr'\]"):
        study_oracle_tokens.main(argv)
