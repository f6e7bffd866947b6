"""The serving load benchmark end to end on a tiny random model: a real `ocelli serve`
subprocess on 127.0.0.1, the `openai` client, the soak. Speed is never asserted."""

import json

import pytest
import serve_load

from ocelli.errors import ConfigError


@pytest.mark.slow
def test_serve_load_measures_every_level_and_the_soak(tmp_path):
    out, docs = tmp_path / "serve_load.json", tmp_path / "benchmarks.md"
    settings = ["concurrencies=[1, 4]", "requests_per_level=4", "max_tokens=3"]
    settings += ["rounds=2", "min_waves=1"]
    settings += ["warmup_requests=1", "num_images=2", "soak_requests=8", "soak_concurrency=4"]
    argv = ["--tiny", "--threads", "1", "--out", str(out), "--docs", str(docs)]
    for setting in settings:
        argv += ["--set", setting]
    serve_load.main(argv)
    results = json.loads(out.read_text())["results"]
    levels = results["levels"]
    assert [level["concurrency"] for level in levels] == [1, 4]
    for level in levels:
        assert level["errors"] == 0 and level["requests"] == 2 * 4  # rounds x requests
        assert level["output_tokens"] == 2 * 4 * 3  # ignore_eos: exactly max_tokens each
        assert len(level["round_tokens_per_s"]) == 2
        assert level["latency_p50_s"] >= level["ttft_p50_s"] > 0
    assert levels[0]["throughput_ratio"] == 1.0
    assert levels[1]["throughput_ratio"] == pytest.approx(
        levels[1]["output_tokens_per_s"] / levels[0]["output_tokens_per_s"]
    )
    memory = results["soak"]["memory"]
    assert results["soak"]["errors"] == 0
    assert 0 < memory["start_mib"] <= memory["peak_mib"] and memory["samples"] >= 2
    assert results["threads"] == 1 and "load_average" in results
    assert "<!-- serve_load:start -->" in docs.read_text()


def test_serve_load_needs_a_model_or_tiny(tmp_path):
    with pytest.raises(ConfigError, match="--model DIR, or --tiny"):
        serve_load.main(["--no-docs", "--out", str(tmp_path / "x.json")])


@pytest.mark.slow
def test_serve_load_timed_soak_samples_windows(tmp_path):
    out, docs = tmp_path / "serve_load.json", tmp_path / "benchmarks.md"
    settings = ["concurrencies=[1]", "requests_per_level=2", "max_tokens=3", "rounds=1"]
    settings += ["min_waves=1", "warmup_requests=1", "num_images=2", "soak_concurrency=3"]
    settings += ["soak_window_s=0.5"]
    argv = ["--tiny", "--threads", "1", "--out", str(out), "--docs", str(docs)]
    for setting in settings:
        argv += ["--set", setting]
    serve_load.main([*argv, "--soak-seconds", "2"])
    soak = json.loads(out.read_text())["results"]["soak"]
    assert soak["errors"] == 0 and soak["wall_s"] >= 2
    assert len(soak["windows"]) >= 3
    assert all(window["rss_mib"] > 0 for window in soak["windows"])
    assert soak["requests"] == sum(window["requests"] for window in soak["windows"])
    assert soak["stability"]["windows"] == len(soak["windows"])
    assert isinstance(soak["stability"]["memory_stable"], bool)
    assert "Timed soak" in docs.read_text()


def test_serve_load_refuses_an_unknown_client(tmp_path):
    argv = ["--tiny", "--no-docs", "--out", str(tmp_path / "x.json"), "--set", "client=curl"]
    with pytest.raises(ConfigError, match="client must be one of openai, httpx; got 'curl'"):
        serve_load.main(argv)


@pytest.mark.slow
def test_serve_load_with_the_bare_httpx_client(tmp_path):
    out = tmp_path / "serve_load.json"
    settings = ["client=httpx", "concurrencies=[1, 2]", "requests_per_level=2", "max_tokens=3"]
    settings += ["rounds=1", "min_waves=1", "warmup_requests=1", "num_images=2"]
    settings += ["soak_requests=2", "soak_concurrency=2"]
    argv = ["--tiny", "--threads", "1", "--out", str(out), "--no-docs"]
    for setting in settings:
        argv += ["--set", setting]
    record = serve_load.main(argv)
    levels = json.loads(out.read_text())["results"]["levels"]
    assert [(level["errors"], level["output_tokens"]) for level in levels] == [(0, 6), (0, 6)]
    assert all(level["ttft_p50_s"] > 0 for level in levels)
    assert "bare `httpx` client" in serve_load.render(record)
