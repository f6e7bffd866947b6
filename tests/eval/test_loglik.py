"""Log-likelihood ranking of candidate answers: candidate sets, the scoring modes, the
local backend against a hand computation, batch-size independence and resuming."""

import json

import pytest
import torch

from ocelli.errors import ConfigError
from ocelli.eval.backends import LocalBackend, OpenAIBackend, Request
from ocelli.eval.harness import evaluate
from ocelli.eval.scoring import with_scoring
from ocelli.eval.tasks import resolve_tasks
from ocelli.eval.tasks.world_closed import answer_candidates

from .conftest import FakeBackend

CLOSED = "world_vqa,pope_popular,mme,mmbench_circular"


def test_candidate_sets_of_world_answers():
    assert answer_candidates("yes", "en") == ["yes", "no"]
    assert answer_candidates("否", "zh") == ["是", "否"]
    assert "purple" in answer_candidates("red", "en") and len(answer_candidates("red", "en")) == 10
    assert answer_candidates("中", "zh") == ["小", "中", "大"]
    assert answer_candidates("3", "zh") == [str(n) for n in range(10)]
    assert answer_candidates("left", "en") == ["left", "right"]
    assert answer_candidates("No. The image has 0 circles and 1 star.", "en") is None


def test_scoring_modes_choose_the_tasks():
    tasks = resolve_tasks("world_vqa,caption")
    assert [t.name for t in with_scoring(tasks, "generate")] == ["world_vqa", "caption"]
    both = with_scoring(tasks, "both")
    assert [t.name for t in both] == ["world_vqa", "world_vqa.loglik", "caption"]
    assert both[1].describe()["scoring"] == "loglik"
    with pytest.raises(ConfigError, match="caption have no candidate answers"):
        with_scoring(tasks, "loglik")
    with pytest.raises(ConfigError, match="scoring must be one of"):
        with_scoring(tasks, "judge")


def test_loglik_asks_only_closed_questions(world_dir):
    (task,) = with_scoring(resolve_tasks("world_vqa"), "loglik")
    samples = task.build(world_dir)
    assert samples and all(s.meta["type"] != "reasoning" for s in samples)
    assert all(s.truth in task.candidates(s) for s in samples)


def test_a_server_cannot_rank(world_dir, tmp_path):
    backend = OpenAIBackend("http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="cannot rank answers by log-likelihood"):
        evaluate(backend, "pope_random", tmp_path, world_dir, scoring="loglik", progress=False)


class RankingOracle(FakeBackend):
    """Ranks the true answer first: a backend that can score candidates."""

    supports_loglik = True

    def __init__(self, truths):
        super().__init__(lambda request: "", "ranking-oracle")
        self.truths = truths

    def rank(self, requests):
        self.calls += requests
        ranked = []
        for request in requests:
            truth = self.truths[(tuple(request.images), request.prompt)]
            ranked.append((truth, [float(c == truth) for c in request.candidates]))
        return ranked


def test_loglik_runs_resume_like_generation(world_dir, tmp_path):
    tasks = with_scoring(resolve_tasks(CLOSED), "loglik")
    truths = {(tuple(s.images), s.prompt): s.truth for task in tasks for s in task.build(world_dir)}
    first = evaluate(
        RankingOracle(truths), CLOSED, tmp_path, world_dir, scoring="loglik", progress=False
    )
    assert first["tasks"]["world_vqa.loglik"]["metrics"]["accuracy"] == 1.0
    assert first["tasks"]["mmbench_circular.loglik"]["metrics"]["circular_accuracy"] == 1.0
    path = tmp_path / "samples" / "pope_popular.loglik.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-5]) + lines[-5][:30])  # as a kill leaves it
    backend = RankingOracle(truths)
    again = evaluate(backend, CLOSED, tmp_path, world_dir, scoring="loglik", progress=False)
    assert len(backend.calls) == 5
    assert again["tasks"] == first["tasks"] | {
        name: {**task, "seconds": again["tasks"][name]["seconds"]}
        for name, task in first["tasks"].items()
    }


def _hand_logprob(pipeline, image, prompt, candidate):
    """Sum of log p(token) over the answer's tokens, one unpadded sequence."""
    messages = pipeline.conversation([image], prompt) + [
        {"role": "assistant", "content": candidate}
    ]
    encoded = pipeline.processor.encode_conversation(messages, 1)
    ids = torch.tensor([encoded["input_ids"]])
    pixels = pipeline.processor.image_processor([image])
    with torch.inference_mode():
        logits = pipeline.model(input_ids=ids, pixel_values=pixels).logits[0].float()
    total = 0.0
    for position, label in enumerate(encoded["labels"]):
        if label != -100:
            total += torch.log_softmax(logits[position - 1], dim=-1)[label].item()
    return total


def test_local_ranking_matches_a_hand_computation(model_dir, world_dir):
    backend = LocalBackend(model_dir)
    (task,) = with_scoring(resolve_tasks("mme"), "loglik")
    samples = task.build(world_dir)[:2]

    requests = [Request(s.images, s.prompt, 8, ["yes", "no", "maybe so"]) for s in samples]
    for request, (best, scores) in zip(requests, backend.rank(requests), strict=True):
        by_hand = [
            _hand_logprob(backend.pipeline, request.images[0], request.prompt, c)
            for c in request.candidates
        ]
        assert scores == pytest.approx(by_hand, abs=1e-4)
        assert best == request.candidates[by_hand.index(max(by_hand))]


@pytest.mark.slow
def test_loglik_same_at_batch_size_1_and_16(model_dir, world_dir, tmp_path):
    runs = {
        size: evaluate(
            str(model_dir),
            "world_vqa,mmbench_circular",
            tmp_path / f"b{size}",
            world_dir,
            limit=10,
            batch_size=size,
            scoring="loglik",
            progress=False,
        )
        for size in (1, 16)
    }
    for name, task in runs[1]["tasks"].items():
        assert task["metrics"] == runs[16]["tasks"][name]["metrics"], name
        assert task["unit_scores"] == runs[16]["tasks"][name]["unit_scores"], name
    records = [
        [json.loads(line) for line in (tmp_path / f"b{size}/samples/world_vqa.loglik.jsonl").open()]
        for size in (1, 16)
    ]
    for one, sixteen in zip(*records, strict=True):
        assert one["raw"] == sixteen["raw"]
        assert one["candidate_scores"] == pytest.approx(sixteen["candidate_scores"], abs=1e-4)
