"""benchmarks/hallucination.py end to end on a tiny run made on the spot (--tiny)."""

import json

import hallucination
import pytest

from ocelli.errors import CheckpointError


@pytest.mark.slow
def test_hallucination_benchmark_measures_every_row(tmp_path):
    out, docs = tmp_path / "hallucination.json", tmp_path / "benchmarks.md"
    hallucination.main(["--tiny", "--threads", "1", "--out", str(out), "--docs", str(docs)])
    record = json.loads(out.read_text())
    rows = record["results"]["rows"]
    assert [row["method"] for row in rows] == [
        "SFT greedy",
        "SFT sampling (T=1)",
        "SFT + VCD (alpha 1)",
        "SFT greedy + Woodpecker",
        "DPO (stage 3) greedy",
        "DPO + SFT term greedy",
        "RLHF (learned reward) greedy",
        "RL (verifiable reward) greedy",
    ]
    trained = record["results"]["align_training"]
    assert trained["RL (verifiable reward)"]["reward"] == "world"
    assert trained["RLHF (learned reward)"]["reward"].startswith("model:")
    assert trained["RL (verifiable reward)"]["last_step"]["step"] == record["config"]["rl_steps"]
    for row in rows:
        for kind in ("random", "popular", "adversarial"):
            assert 0 <= row[f"pope_{kind}"]["yes_ratio"] <= 1
        assert 0 <= row["chair"]["chair_i"] <= 1 and 0 <= row["vqa_accuracy"] <= 1
        assert row["num_answers"] > 0 and row["time_vs_greedy"] > 0
    assert rows[0]["time_vs_greedy"] == 1.0
    text = docs.read_text()
    assert "<!-- hallucination:start -->" in text and "| SFT greedy |" in text
    assert "RL (verifiable reward): GRPO" in text
    assert (tmp_path / "images" / "hallucination.png").is_file()


def test_a_run_without_stage_3_is_named(tmp_path):
    (tmp_path / "instruct" / "final").mkdir(parents=True)
    (tmp_path / "instruct" / "final" / "config.json").write_text("{}")
    config = hallucination.HallucinationBenchConfig(run=str(tmp_path))
    with pytest.raises(CheckpointError, match="dpo/final is not a saved model"):
        hallucination.methods(config, tmp_path)


def test_align_rows_need_stage_3_pairs(tmp_path):
    for stage in ("instruct", "dpo"):
        (tmp_path / stage / "final").mkdir(parents=True)
        (tmp_path / stage / "final" / "config.json").write_text("{}")
    config = hallucination.HallucinationBenchConfig(run=str(tmp_path))
    with pytest.raises(CheckpointError, match="align_rows=false"):
        hallucination.methods(config, tmp_path)
    config.align_rows = False
    assert len(hallucination.methods(config, tmp_path)) == 6  # greedy, sampling, 2 VCD, DPO
