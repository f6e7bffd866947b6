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
    ]
    for row in rows:
        for kind in ("random", "popular", "adversarial"):
            assert 0 <= row[f"pope_{kind}"]["yes_ratio"] <= 1
        assert 0 <= row["chair"]["chair_i"] <= 1 and 0 <= row["vqa_accuracy"] <= 1
        assert row["num_answers"] > 0 and row["time_vs_greedy"] > 0
    assert rows[0]["time_vs_greedy"] == 1.0
    text = docs.read_text()
    assert "<!-- hallucination:start -->" in text and "| SFT greedy |" in text
    assert (tmp_path / "images" / "hallucination.png").is_file()


def test_a_run_without_stage_3_is_named(tmp_path):
    (tmp_path / "instruct" / "final").mkdir(parents=True)
    (tmp_path / "instruct" / "final" / "config.json").write_text("{}")
    config = hallucination.HallucinationBenchConfig(run=str(tmp_path))
    with pytest.raises(CheckpointError, match="dpo/final is not a saved model"):
        hallucination.methods(config, tmp_path)
