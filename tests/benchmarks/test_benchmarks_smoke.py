"""The performance benchmarks run end to end on tiny models; speed is never asserted."""

import json

import _common
import perf_generate
import perf_train
import pytest

from ocelli.errors import ConfigError

TINY_MODEL = [
    "model.vision_overrides={hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, "
    "intermediate_size: 64, image_size: 16, patch_size: 8}",
    "model.language_model_overrides={hidden_size: 32, num_hidden_layers: 1, vocab_size: 64}",
    "model.vocab_size=64",
]


def run_script(script, tmp_path, settings):
    out, docs = tmp_path / f"{script.NAME}.json", tmp_path / "benchmarks.md"
    argv = ["--threads", "1", "--out", str(out), "--docs", str(docs)]
    for setting in TINY_MODEL + settings:
        argv += ["--set", setting]
    script.main(argv)
    return json.loads(out.read_text()), docs.read_text()


def test_perf_train_measures_both_loops_and_their_ratio(tmp_path):
    settings = ["batch_size=2", "num_text_tokens=8", "warmup_steps=1", "measured_steps=2"]
    settings += ["rounds=2", "matmul_size=64"]
    record, docs = run_script(perf_train, tmp_path, settings)
    results = record["results"]
    for side in ("ocelli", "hf"):
        assert results[side]["samples_per_s"] > 0
        assert results[side]["tokens_per_s"] == pytest.approx(
            results[side]["samples_per_s"] * results["sequence_length"]
        )
        assert results[side]["mfu"] > 0
        assert len(results[side]["step_s"]) == 2 * 2  # rounds x timed steps
    assert results["ratio"] == pytest.approx(
        results["ocelli"]["samples_per_s"] / results["hf"]["samples_per_s"]
    )
    assert results["sequence_length"] == 8 + 4  # text tokens + (16 / 8)^2 image tokens
    assert record["config"]["batch_size"] == 2
    assert {"git_commit", "machine", "cpu"} <= set(record["provenance"])
    assert docs.startswith("# Benchmarks\n")
    assert "<!-- perf_train:start -->" in docs and "ocelli / HF" in docs


def test_perf_generate_measures_both_sides_per_batch_size(tmp_path):
    settings = ["batch_sizes=[1, 2]", "num_prompt_text_tokens=4", "max_new_tokens=3"]
    settings += ["rounds=2"]
    record, docs = run_script(perf_generate, tmp_path, settings)
    entries = record["results"]["by_batch_size"]
    assert [entry["batch_size"] for entry in entries] == [1, 2]
    for entry in entries:
        assert entry["ocelli"]["tokens_per_s"] > 0 and entry["hf"]["tokens_per_s"] > 0
        assert entry["ratio"] == pytest.approx(
            entry["ocelli"]["tokens_per_s"] / entry["hf"]["tokens_per_s"]
        )
        assert entry["same_tokens"]  # same weights, greedy: the export must not change outputs
    assert "<!-- perf_generate:start -->" in docs


def test_a_config_that_times_nothing_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="warmup_steps"):
        perf_train.main(["--set", "warmup_steps=0", "--out", str(tmp_path / "x.json")])


def test_a_rerun_replaces_only_its_own_docs_section(tmp_path):
    docs = tmp_path / "benchmarks.md"
    _common.update_docs_section(docs, "perf_train", "train v1")
    _common.update_docs_section(docs, "perf_generate", "generate v1")
    docs.write_text(docs.read_text() + "\n## Training study\n\nkept as it is\n")
    _common.update_docs_section(docs, "perf_train", "train v2")
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n")
    assert "train v2" in text and "train v1" not in text
    assert text.count("<!-- perf_train:start -->") == 1
    assert text.index("## Performance") < text.index("train v2") < text.index("generate v1")
    assert text.index("generate v1") < text.index("## Training study")
    assert text.rstrip().endswith("kept as it is")


def test_markers_missing_from_an_existing_file_go_into_its_performance_section(tmp_path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nIntro.\n\n## Performance\n\nHow to run.\n\n## Study\n\nS.\n")
    _common.update_docs_section(docs, "perf_generate", "table")
    text = docs.read_text()
    assert text.index("How to run.") < text.index("table") < text.index("## Study")


def test_eval_throughput_times_the_harness_and_the_loop(tmp_path):
    import eval_throughput

    out, docs = tmp_path / "eval_throughput.json", tmp_path / "benchmarks.md"
    argv = ["--threads", "1", "--out", str(out), "--docs", str(docs)]
    for setting in ("tiny=true", "num_samples=6", "rounds=2", "batch_size=4"):
        argv += ["--set", setting]
    eval_throughput.main(argv)
    results = json.loads(out.read_text())["results"]
    rates = results["samples_per_s"]
    assert all(rates[side] > 0 for side in ("loop", "harness_generate", "harness_loglik"))
    assert results["speedup_generate"] == pytest.approx(
        rates["harness_generate"] / rates["loop"], rel=0.02
    )
    for side, rounds in results["rounds"].items():
        assert len(rounds) == 2, side
    assert results["rounds"]["harness_loglik"][0]["num_samples"] == results["num_closed_samples"]
    assert set(results["accuracy"]) == {"loop", "harness_generate", "harness_loglik"}
    assert results["threads"] == 1 and "<!-- eval_throughput:start -->" in docs.read_text()
