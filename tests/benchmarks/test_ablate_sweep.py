"""The ablation's token/resolution sweep: variants run like connector rows at tiny sizes,
and a variant that names no sweepable connector, or a value the connector refuses, is a
ConfigError before anything trains."""

import json

import ablate_interfaces
import ablate_sweep
import pytest

from ocelli.errors import ConfigError


def sweep_argv(tmp_path, variants: str) -> list[str]:
    argv = ["--tiny", "--steps", "1", "--sweep", variants, "--eval-limit", "4"]
    argv += ["--threads", "1", "--out", str(tmp_path / "runs")]
    return argv + ["--results", str(tmp_path / "r.json"), "--plot", str(tmp_path / "p.png")]


def test_a_variant_names_a_sweepable_connector_and_a_whole_value():
    assert ablate_sweep.parse_variant("patches-48px") == ablate_sweep.Variant(
        "patches-48px", "patches", "image_size", 48
    )
    with pytest.raises(ConfigError, match="connector one of qformer, c-abstractor, patches"):
        ablate_sweep.resolve_sweep("qformer-8,mlp-8")
    with pytest.raises(ConfigError, match="write e.g. patches-16px"):
        ablate_sweep.resolve_sweep("patches-48")
    with pytest.raises(ConfigError, match="repeat"):
        ablate_sweep.resolve_sweep("qformer-8,qformer-8")
    assert [v.name for v in ablate_sweep.resolve_sweep("all")] == ablate_sweep.SWEEP


def test_a_token_count_the_connector_refuses_fails_before_stage0(tmp_path):
    with pytest.raises(ConfigError, match="c-abstractor-10.*not a square number; use e.g. 9"):
        ablate_interfaces.main(sweep_argv(tmp_path, "qformer-8,c-abstractor-10"))
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_sweep_runs_each_variant_with_its_token_count(tmp_path):
    docs = tmp_path / "benchmarks.md"
    docs.write_text(
        "# Benchmarks\n\n## Performance\n\n<!-- ablate_interfaces:start -->\ntable\n"
        "<!-- ablate_interfaces:end -->\n\n### Later section\n"
    )
    ablate_interfaces.main(sweep_argv(tmp_path, "qformer-4,patches-32px") + ["--docs", str(docs)])
    record = json.loads((tmp_path / "r.json").read_text())
    rows = record["results"]["rows"]
    assert [row["variant"] for row in rows] == ["qformer-4", "patches-32px"]
    assert [row["image_tokens"] for row in rows] == [4, (32 // 8) ** 2]
    assert rows[1]["image_size"] == 32
    for row in rows:
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["blind_accuracy"] <= 1
        assert row["samples_per_s"] > 0 and row["stage2_trained_parameters"] > 0
    assert record["config"]["sweep"] == ["qformer-4", "patches-32px"]
    assert (tmp_path / "p.png").stat().st_size > 0
    text = docs.read_text()
    order = ["ablate_interfaces:end", "ablate_interfaces_sweep:start", "### Later section"]
    assert sorted(order, key=text.index) == order
    assert "2 of 2 variants done" in text

    # a second sweep on the same stage 0 reuses it instead of training it again
    argv = sweep_argv(tmp_path, "qformer-8") + ["--reuse-stage0", "--no-docs"]
    results = ablate_interfaces.main(argv)["results"]
    assert results["shared_stage0_reused"] is True
    assert results["rows"][0]["image_tokens"] == 8
