"""perf_packing and ablate_interfaces run end to end at tiny sizes; speed and accuracy
are never asserted, only that every figure is there."""

import json

import ablate_interfaces
import perf_packing
import pytest

TINY_PAIR = [
    "model.vision_overrides={hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
    "intermediate_size: 64, image_size: 16, patch_size: 8}",
    "model.language_model_overrides={hidden_size: 32, num_hidden_layers: 1, vocab_size: 64}",
    "model.vocab_size=64",
    "batch_size=4",
    "max_text_tokens=24",
    "pack_max_tokens=64",
    "measured_steps=1",
    "memory_steps=1",
    "rounds=1",
]


@pytest.mark.slow
def test_perf_packing_measures_three_sides_and_their_memory(tmp_path):
    out, docs = tmp_path / "perf_packing.json", tmp_path / "benchmarks.md"
    argv = ["--threads", "1", "--out", str(out), "--docs", str(docs)]
    perf_packing.main(argv + [arg for item in TINY_PAIR for arg in ("--set", item)])
    results = json.loads(out.read_text())["results"]
    for side in perf_packing.SIDES:
        assert results[side]["samples_per_s"] > 0
        assert len(results[side]["step_s"]) == 1  # rounds x timed steps
        assert results[side]["peak_memory_per_sample_bytes"] is not None
    assert results["ratio_packed_vs_hf"] == pytest.approx(
        results["ocelli_packed"]["samples_per_s"] / results["hf"]["samples_per_s"]
    )
    assert results["packed_rows_per_batch"] <= 4
    assert "<!-- perf_packing:start -->" in docs.read_text()


@pytest.mark.slow
def test_perf_packing_with_the_vision_tower_frozen_reads_precomputed_features(tmp_path):
    out = tmp_path / "perf_packing_frozen.json"
    argv = ["--threads", "1", "--out", str(out), "--no-docs", "--set", "frozen_vision=true"]
    record = perf_packing.main(argv + [arg for item in TINY_PAIR for arg in ("--set", item)])
    results = record["results"]
    assert results["vision_features_precompute_s"] > 0
    assert results["num_images"] == 4 * 2  # batch x (warm-up + timed steps)
    assert all(results[side]["samples_per_s"] > 0 for side in perf_packing.SIDES)
    assert "Vision tower frozen on every side" in perf_packing.render(record)
    assert set(results["first_call_s"]) == set(perf_packing.SIDES)
    assert "torch.compile: not used" in perf_packing.render(record)
    record["config"]["compile"] = True  # the note a run with --set compile=true writes
    assert "the one-off compile falls in the untimed first call" in perf_packing.render(record)


@pytest.mark.slow
def test_ablation_trains_and_scores_each_connector(tmp_path):
    argv = ["--tiny", "--steps", "1", "--connectors", "mlp,adapter", "--eval-limit", "4"]
    argv += ["--threads", "1", "--out", str(tmp_path / "runs")]
    argv += ["--results", str(tmp_path / "r.json"), "--plot", str(tmp_path / "p.png")]
    ablate_interfaces.main(argv + ["--docs", str(tmp_path / "benchmarks.md")])
    rows = json.loads((tmp_path / "r.json").read_text())["results"]["rows"]
    assert [row["connector"] for row in rows] == ["mlp", "adapter"]
    for row in rows:
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["blind_accuracy"] <= 1
        assert row["image_tokens"] >= 1 and row["connector_parameters"] > 0
        assert row["samples_per_s"] > 0 and row["by_type"]
    assert (tmp_path / "p.png").stat().st_size > 0
    assert "<!-- ablate_interfaces:start -->" in (tmp_path / "benchmarks.md").read_text()
