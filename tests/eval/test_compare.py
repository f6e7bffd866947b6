"""`ocelli eval compare`: paired bootstrap over two runs' unit scores."""

import json

import pytest

from ocelli.errors import DataError
from ocelli.eval.compare import compare_runs, comparison_markdown
from ocelli.eval.harness import evaluate
from ocelli.eval.runner import prepare
from ocelli.eval.tasks import resolve_tasks

from .conftest import FakeBackend


@pytest.fixture
def two_runs(world_dir, tmp_path):
    (run,) = prepare(resolve_tasks("world_vqa"), world_dir, 40)
    truth = {s.prompt: s.truth for s in run.samples}
    wrong = {s.prompt for s in run.samples[::4]}  # B gets every 4th question wrong
    evaluate(
        FakeBackend(lambda r: "???", "a"),
        "world_vqa",
        tmp_path / "a",
        world_dir,
        limit=40,
        progress=False,
    )
    evaluate(
        FakeBackend(lambda r: "???" if r.prompt in wrong else truth[r.prompt], "b"),
        "world_vqa",
        tmp_path / "b",
        world_dir,
        limit=40,
        progress=False,
    )
    return tmp_path / "a", tmp_path / "b"


def test_compare_pairs_units_and_is_seeded(two_runs):
    a, b = two_runs
    (row,) = compare_runs(a, b)
    assert row["task"] == "world_vqa" and row["num_units"] == 40
    assert row["a"] == 0.0 and row["b"] == pytest.approx(0.75, abs=0.03)
    assert row["ci_low"] > 0.5 and row["ci_high"] <= 1.0 and row["p_b_not_better"] == 0.0
    assert compare_runs(a, b) == compare_runs(a, b)
    table = comparison_markdown([row], str(a), str(b))
    assert "| world_vqa | accuracy |" in table and "95% CI" in table


def test_compare_bad_inputs(two_runs, tmp_path):
    a, _ = two_runs
    with pytest.raises(DataError, match="results.json not found"):
        compare_runs(a, tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{")
    with pytest.raises(DataError, match="not valid JSON"):
        compare_runs(a, broken)
    (broken / "results.json").write_text(json.dumps({"tasks": {"other": {}}}))
    with pytest.raises(DataError, match="share no task"):
        compare_runs(a, broken)
