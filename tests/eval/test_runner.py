"""The runner: oracle scores, resume, retries and failures, run identity, batch sizes."""

import json

import pytest

from ocelli.errors import ConfigError, DataError
from ocelli.eval.harness import evaluate
from ocelli.eval.runner import prepare
from ocelli.eval.tasks import resolve_tasks
from ocelli.world.text_en import detailed_caption as english_caption
from ocelli.world.text_zh import detailed_caption as chinese_caption

from .conftest import FakeBackend, oracle


def _samples(names, world_dir, limit=None):
    return [s for run in prepare(resolve_tasks(names), world_dir, limit) for s in run.samples]


def _perfect_answer(sample):
    """What a model that knows the scene answers."""
    if isinstance(sample.truth, dict):  # detailed descriptions: the world's own caption
        from ocelli.world import Scene

        scene = Scene.from_dict(sample.truth)
        return (english_caption if sample.meta["lang"] == "en" else chinese_caption)(scene)
    if isinstance(sample.truth, list):  # captions: the reference itself
        return sample.truth[0]
    return sample.truth


def test_an_oracle_scores_perfectly_on_every_task(world_dir, tmp_path):
    names = "world_vqa,pope_adversarial,mme,mmbench_circular,chair,faith"
    backend = oracle(_samples(names, world_dir), _perfect_answer)
    results = evaluate(backend, names, tmp_path / "run", world_dir, progress=False)
    metrics = {name: task["metrics"] for name, task in results["tasks"].items()}
    assert metrics["world_vqa"]["accuracy"] == 1.0
    assert metrics["pope_adversarial"]["f1"] == 1.0
    assert metrics["pope_adversarial"]["yes_ratio"] == 0.5
    assert metrics["mme"]["total_score"] == 4 * 200.0
    assert metrics["mmbench_circular"]["circular_accuracy"] == 1.0
    assert metrics["chair"]["chair_s"] == 0.0 and metrics["chair"]["recall"] == 1.0
    assert (metrics["faith"]["precision"], metrics["faith"]["recall"]) == (1.0, 1.0)
    out = tmp_path / "run"
    for name in results["tasks"]:
        assert (out / "samples" / f"{name}.jsonl").is_file()
    assert "| world_vqa | accuracy | 1.0000 |" in (out / "results.md").read_text()
    html = (out / "report.html").read_text()
    assert html.count("<img") > 10 and "mmbench_circular" in html


def test_results_record_how_the_run_was_made(world_dir, tmp_path):
    backend = oracle(_samples("pope_random", world_dir, 6))
    results = evaluate(backend, "pope_random", tmp_path / "run", world_dir, limit=6, progress=False)
    stored = json.loads((tmp_path / "run" / "results.json").read_text())
    assert stored == json.loads(json.dumps(results))
    task = stored["tasks"]["pope_random"]
    assert task["definition"]["prompt_template"] == "Is there {object} in the image?"
    assert task["definition"]["protocol"]["negative_sampling"] == "random"
    assert task["prompts"][0].startswith("Is there")
    assert stored["run"]["batch_size"] == 64 and stored["run"]["limit"] == 6
    assert stored["run"]["seeds"] == {"pope_random": 0}
    assert stored["run"]["model_config_hash"] == "oracle"
    assert stored["provenance"]["ocelli_version"]
    line = json.loads(
        (tmp_path / "run" / "samples" / "pope_random.jsonl").read_text().splitlines()[0]
    )
    assert {"prompt", "raw", "answer", "truth", "score", "status"} <= set(line)


def test_rerun_skips_finished_samples(world_dir, tmp_path):
    samples = _samples("world_vqa", world_dir)
    first = oracle(samples)
    evaluate(first, "world_vqa", tmp_path, world_dir, limit=10, progress=False)
    assert len(first.calls) == 10
    again = oracle(samples)
    results = evaluate(again, "world_vqa", tmp_path, world_dir, limit=10, progress=False)
    assert again.calls == [] and results["tasks"]["world_vqa"]["num_scored"] == 10
    more = oracle(samples)
    evaluate(more, "world_vqa", tmp_path, world_dir, limit=15, progress=False)
    assert len(more.calls) == 5


def test_failed_requests_are_retried_then_counted_not_scored(world_dir, tmp_path, failing):
    samples = _samples("pope_random", world_dir, 6)
    attempts = {}

    def flaky(request):
        attempts[request.prompt] = attempts.get(request.prompt, 0) + 1
        if request.prompt == samples[0].prompt:
            return failing("HTTP 500")  # always
        if request.prompt == samples[1].prompt and attempts[request.prompt] == 1:
            return failing("timeout")  # once
        return {s.prompt: s.truth for s in samples}[request.prompt]

    results = evaluate(
        FakeBackend(flaky, "oracle"),
        "pope_random",
        tmp_path,
        world_dir,
        limit=6,
        retries=2,
        progress=False,
    )
    task = results["tasks"]["pope_random"]
    assert (task["num_scored"], task["num_failed"]) == (5, 1)
    assert task["failed"] == [{"id": samples[0].id, "error": "HTTP 500"}]
    assert task["metrics"]["accuracy"] == 1.0  # the failure is not a wrong answer
    assert attempts[samples[0].prompt] == 3 and attempts[samples[1].prompt] == 2
    # A rerun asks only the failed sample again.
    backend = oracle(samples)
    results = evaluate(backend, "pope_random", tmp_path, world_dir, limit=6, progress=False)
    assert [r.prompt for r in backend.calls] == [samples[0].prompt]
    assert results["tasks"]["pope_random"]["num_failed"] == 0


def test_a_missing_image_is_a_counted_failure(world_dir, tmp_path):
    import shutil

    data = tmp_path / "world"
    shutil.copytree(world_dir, data)
    samples = _samples("world_vqa", data, 4)
    (data / samples[0].images[0].split(str(data) + "/")[1]).unlink()
    backend = oracle(samples)
    results = evaluate(backend, "world_vqa", tmp_path / "run", data, limit=4, progress=False)
    task = results["tasks"]["world_vqa"]
    assert task["num_failed"] >= 1 and "not found" in task["failed"][0]["error"]
    assert task["num_scored"] + task["num_failed"] == 4
    assert all(s.images[0] != samples[0].images[0] for s in backend.calls)


def test_an_output_directory_of_another_model_is_refused(world_dir, tmp_path):
    samples = _samples("mme", world_dir, 4)
    evaluate(oracle(samples), "mme", tmp_path, world_dir, limit=4, progress=False)
    other = FakeBackend(lambda r: "yes", name="other-model")
    with pytest.raises(ConfigError, match="holds a run of another model"):
        evaluate(other, "mme", tmp_path, world_dir, limit=4, progress=False)
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty and holds no evaluation run"):
        evaluate(other, "mme", stray, world_dir, limit=4, progress=False)


def test_damaged_sample_files(world_dir, tmp_path):
    samples = _samples("world_vqa", world_dir, 6)
    evaluate(oracle(samples), "world_vqa", tmp_path, world_dir, limit=6, progress=False)
    path = tmp_path / "samples" / "world_vqa.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:20])  # cut mid-line, as by a kill
    backend = oracle(samples)
    results = evaluate(backend, "world_vqa", tmp_path, world_dir, limit=6, progress=False)
    assert len(backend.calls) == 1 and results["tasks"]["world_vqa"]["num_scored"] == 6
    path.write_text("{oops\n" + path.read_text())
    with pytest.raises(DataError, match="world_vqa.jsonl:1: damaged record"):
        evaluate(backend, "world_vqa", tmp_path, world_dir, limit=6, progress=False)


def test_world_tasks_need_data(tmp_path):
    with pytest.raises(DataError, match="needs --data"):
        evaluate(FakeBackend(lambda r: "x"), "mme", tmp_path, None, progress=False)


@pytest.mark.slow
def test_caption_metrics_of_an_oracle(world_dir, tmp_path):
    backend = oracle(_samples("caption", world_dir), _perfect_answer)
    results = evaluate(backend, "caption", tmp_path, world_dir, progress=False)
    metrics = results["tasks"]["caption"]["metrics"]
    assert metrics["bleu4"] == pytest.approx(1.0) and metrics["rouge_l"] == pytest.approx(1.0)
    assert metrics["cider"] > 5 and metrics["meteor"] > 0.9
    assert set(results["tasks"]["caption"]["unit_scores"]) == {
        s.id for s in _samples("caption", world_dir)
    }


def _local_run(model_dir, world_dir, out, batch_size):
    return evaluate(
        str(model_dir),
        "world_vqa,pope_popular,mmbench_circular",
        out,
        world_dir,
        limit=12,
        batch_size=batch_size,
        progress=False,
    )


@pytest.mark.slow
def test_same_metrics_at_batch_size_1_and_16(model_dir, world_dir, tmp_path):
    one = _local_run(model_dir, world_dir, tmp_path / "b1", 1)
    sixteen = _local_run(model_dir, world_dir, tmp_path / "b16", 16)
    for name, task in one["tasks"].items():
        assert task["metrics"] == sixteen["tasks"][name]["metrics"], name
        assert task["unit_scores"] == sixteen["tasks"][name]["unit_scores"], name
    raw = [
        [
            json.loads(line)["raw"]
            for line in (tmp_path / b / "samples" / "world_vqa.jsonl").read_text().splitlines()
        ]
        for b in ("b1", "b16")
    ]
    assert raw[0] == raw[1]
    assert one["run"]["weights_hash"] and one["run"]["model_config_hash"]
