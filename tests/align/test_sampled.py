"""Pairs from the model's own samples, judged against the scene graph."""

import pytest

from ocelli.align.sampled import description_score, sampled_pairs
from ocelli.errors import ConfigError
from ocelli.world import load_conversations, load_scenes


class ScriptedPipeline:
    """Answers in turn from a fixed list, recording the sampling seeds it was given."""

    def __init__(self, answers):
        self.answers, self.calls = answers, []

    def chat(self, image, prompt, **kwargs):
        self.calls.append(kwargs)
        return self.answers[len(self.calls) % len(self.answers)]


def test_best_is_paired_with_worst(world_dir):
    record = load_conversations(world_dir, "describe.json")[0]
    truth = record["conversations"][1]["value"]
    wrong = "The image shows 9 objects. A small pink star is at the top."
    pipeline = ScriptedPipeline([wrong, truth, ""])
    pairs = sampled_pairs(pipeline, world_dir, num_samples=3, limit=1)
    assert len(pairs) == 1
    assert pairs[0].chosen == truth and pairs[0].rejected in (wrong, "")
    assert pairs[0].kind == "sampled" and "claim F1 1.000" in pairs[0].detail
    assert len({call["seed"] for call in pipeline.calls}) == 3


def test_ties_give_no_pair_and_scores(world_dir):
    scene = load_scenes(world_dir)[0]
    record = load_conversations(world_dir, "describe.json")[0]
    assert description_score(record["conversations"][1]["value"], scene) == 1.0
    assert description_score("", scene) == 0.0
    assert sampled_pairs(ScriptedPipeline(["same"]), world_dir, num_samples=2, limit=2) == []
    with pytest.raises(ConfigError, match="num_samples"):
        sampled_pairs(ScriptedPipeline(["x"]), world_dir, num_samples=1)


def test_cli_with_a_model(world_dir, tiny_model_dir, tmp_path, run_cli):
    """A random tiny model's samples claim nothing, so they may tie; the command still
    writes the world's pairs and reports how many sampled pairs it found."""
    out = tmp_path / "pairs.jsonl"
    code, stdout, err = run_cli(
        "align",
        "data",
        "--world",
        world_dir,
        "--out",
        out,
        "--kinds",
        "count",
        "--model",
        tiny_model_dir,
        "--samples",
        2,
        "--limit",
        2,
    )
    assert code == 0, err
    assert '"count"' in stdout
