"""benchmarks/hallucination.py end to end on a tiny run made on the spot (--tiny)."""

import importlib.util
import json
from pathlib import Path

import hallucination
import pytest

from ocelli.errors import CheckpointError, ConfigError
from ocelli.eval.backends import LocalBackend
from ocelli.eval.tasks.world_text import DETAILED_PROMPTS
from ocelli.world import QUICKSTART_WORLD, generate_dataset, text
from ocelli.world.loading import load_scenes
from ocelli.world.vocab import SHAPES


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
        "LRV-augmented SFT greedy",
        "DPO + SFT term greedy",
        "Segment-weighted DPO + SFT term greedy",
        "RLHF (learned reward) greedy",
        "RL (verifiable reward) greedy",
    ]
    trained = record["results"]["align_training"]
    assert trained["LRV-augmented SFT"]["train"]["max_steps"] == record["config"]["lrv_steps"]
    segment = trained["Segment-weighted DPO + SFT term"]["dpo"]
    assert segment["segment_weight"] == record["config"]["dpo_segment_weight"]
    assert trained["DPO + SFT term"]["dpo"]["segment_weight"] == 1.0
    assert trained["RL (verifiable reward)"]["reward"] == "world"
    assert trained["RLHF (learned reward)"]["reward"].startswith("model:")
    assert trained["RL (verifiable reward)"]["last_step"]["step"] == record["config"]["rl_steps"]
    for row in rows:
        for kind in ("random", "popular", "adversarial"):
            assert 0 <= row[f"pope_{kind}"]["yes_ratio"] <= 1
        assert 0 <= row["chair"]["chair_i"] <= 1 and 0 <= row["vqa_accuracy"] <= 1
        assert 0 <= row["faith"]["precision"] <= 1 and 0 <= row["faith"]["recall"] <= 1
        assert row["num_answers"] > 0 and row["time_vs_greedy"] > 0
    assert rows[0]["time_vs_greedy"] == 1.0
    text = docs.read_text()
    assert "<!-- hallucination:start -->" in text and "| SFT greedy |" in text
    assert "RL (verifiable reward): GRPO" in text and "LRV-augmented SFT: the SFT model" in text
    assert "claim P / R" in text
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


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"lrv_steps": 0}, "lrv_steps and lrv_batch_size must be >= 1"),
        ({"lrv_lr": 0.0}, "lrv_lr positive"),
        ({"rl_kinds": ["captions"]}, "rl_kinds must name one or more of vqa, describe"),
        ({"rl_kinds": []}, "rl_kinds must name one or more"),
    ],
)
def test_bad_training_settings_are_refused_before_anything_runs(setting, message):
    with pytest.raises(ConfigError, match=message):
        hallucination.HallucinationBenchConfig(**setting)


def test_bad_settings_from_the_command_line_are_refused_before_anything_runs(tmp_path):
    out = tmp_path / "out.json"
    with pytest.raises(ConfigError, match="rl_kinds"):
        hallucination.main(
            ["--run", str(tmp_path), "--set", "rl_kinds=[captions]", "--out", str(out)]
        )
    assert not out.exists()


def _tiny_model_and_processor(lines):
    path = Path(__file__).parents[1] / "generate" / "conftest.py"
    spec = importlib.util.spec_from_file_location("generate_conftest_for_benchmarks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.tiny_model_and_processor(lines, vocab_size=400)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run directory holding a 12-image English world (as test and train split) and a
    tiny random model saved as its SFT model."""
    run = tmp_path_factory.mktemp("halluc-run")
    world = run / "world" / "test"
    generate_dataset(world, 12, seed=3, split="test", config=QUICKSTART_WORLD, progress=False)
    (run / "world" / "train").symlink_to(world, target_is_directory=True)
    lines = (world / "corpus.txt").read_text(encoding="utf-8").splitlines()
    model, processor = _tiny_model_and_processor(lines)
    model.save_pretrained(run / "instruct" / "final")
    processor.save_pretrained(run / "instruct" / "final")
    return run


def test_woodpecker_row_scores_the_corrected_answers_through_the_harness(tiny_run, monkeypatch):
    """The corrected row answers POPE and CHAIR through the same harness path as the
    greedy row: its "yes" about an absent object becomes "no" and its caption loses the
    absent object, so POPE and CHAIR move, not only world-VQA."""
    world = tiny_run / "world" / "test"
    scenes = {str(world / scene.image): scene for scene in load_scenes(world)}

    def scripted_greedy(backend, requests):
        # The SFT model's greedy answers, made wrong on purpose: "Yes" to every question,
        # and a faithful description plus one object the image lacks.
        answers = []
        for request in requests:
            scene = scenes[request.images[-1]]
            if request.prompt != DETAILED_PROMPTS["en"]:
                answers.append("Yes")
                continue
            shown = {obj.shape for obj in scene.objects}
            absent = next(shape for shape in SHAPES if shape not in shown)
            answers.append(f"{text.detailed_caption(scene, 'en')} A small red {absent} is here.")
        return answers

    monkeypatch.setattr(LocalBackend, "_batch", scripted_greedy)
    config = hallucination.HallucinationBenchConfig(run=str(tiny_run), limit=12, batch_size=8)
    sft = tiny_run / "instruct" / "final"
    rows = {}
    for name, kwargs in (("greedy", {}), ("corrected", {"correct": True})):
        work = tiny_run / f"work-{name}"
        work.mkdir()
        method = (name, sft, {"do_sample": False, **kwargs})
        rows[name] = hallucination.measure_row(config, tiny_run, work, method)
    greedy, corrected = rows["greedy"], rows["corrected"]
    assert greedy["pope_adversarial"]["yes_ratio"] == 1.0
    assert greedy["chair"]["chair_s"] == 1.0
    # The detector is exact on the world: every absent object answered "no", none left.
    assert corrected["pope_adversarial"] == {"accuracy": 1.0, "f1": 1.0, "yes_ratio": 0.5}
    assert corrected["chair"] == {"chair_i": 0.0, "chair_s": 0.0}


def test_corrected_and_sampled_rows_refuse_loglik_ranking(tiny_run):
    sft = tiny_run / "instruct" / "final"
    assert hallucination.DecodingBackend(sft, "greedy", {"do_sample": False}).supports_loglik
    for kwargs in ({"do_sample": False, "correct": True}, {"do_sample": True}):
        assert not hallucination.DecodingBackend(sft, "other", kwargs).supports_loglik


def test_each_recipe_keeps_its_own_results_and_docs_section(tmp_path):
    assert hallucination.section_name(None) == "hallucination"
    stage = tmp_path / "instruct"
    stage.mkdir()
    assert hallucination.section_name(tmp_path) == "hallucination"  # no stage record yet
    for recipe, expected in (("quickstart", "hallucination"), ("base", "hallucination_base")):
        (stage / "recipe.json").write_text(json.dumps({"recipe": {"name": recipe}}))
        assert hallucination.section_name(tmp_path) == expected
    (stage / "recipe.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not a stage record"):
        hallucination.section_name(tmp_path)
