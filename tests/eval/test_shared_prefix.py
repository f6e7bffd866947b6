"""Answering with each image's prefix read once: the same greedy answers and candidate
scores as the pipeline's own batched generation and scoring, with several questions per
image, questions on several images, rows that end early, and a fallback for connectors
that act inside the language model."""

import pytest

from ocelli.eval import shared_prefix
from ocelli.eval.backends import LocalBackend, Request
from ocelli.eval.tasks import resolve_tasks
from ocelli.generate import load


@pytest.fixture(scope="module")
def pipeline(model_dir):
    return load(model_dir)


@pytest.fixture(scope="module")
def samples(world_dir):
    (task,) = resolve_tasks("world_vqa")
    chosen = task.build(world_dir)[:24]  # a few images, several questions each
    assert len({tuple(s.images) for s in chosen}) > 1
    return chosen


def test_greedy_answers_match_the_pipeline(pipeline, samples):
    images = [s.images for s in samples]
    prompts = [s.prompt for s in samples]
    expected = pipeline.chat_batch(images, prompts, max_new_tokens=12, do_sample=False)
    assert shared_prefix.generate_greedy(pipeline, images, prompts, 12) == expected
    # One token each, and a batch of one.
    expected = pipeline.chat_batch(images[:5], prompts[:5], max_new_tokens=1, do_sample=False)
    assert shared_prefix.generate_greedy(pipeline, images[:5], prompts[:5], 1) == expected
    assert shared_prefix.generate_greedy(pipeline, images[:1], prompts[:1], 12) == [
        pipeline.chat(images[0], prompts[0], max_new_tokens=12, do_sample=False)
    ]


def test_candidate_scores_match_the_pipeline(pipeline, samples):
    images = [s.images for s in samples[:10]]
    prompts = [s.prompt for s in samples[:10]]
    colours = ["red", "blue", "green", "yellow", "purple", "gray"]  # scored apart from 2-3
    candidates = [["yes", "no"], colours, []] + [["1", "2", "three"], colours] * 3 + [["a"]]
    expected = pipeline.score_batch(images, prompts, candidates, batch_size=10)
    got = shared_prefix.score_candidates(pipeline, images, prompts, candidates)
    assert [len(row) for row in got] == [len(row) for row in candidates]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine == pytest.approx(theirs, abs=1e-4)


@pytest.mark.parametrize("pass_cost", [0, shared_prefix.PASS_COST, 10**9])
def test_candidate_scores_and_rankings_match_the_pipeline_however_rows_are_grouped(
    pipeline, samples, monkeypatch, pass_cost
):
    # 0: a pass per distinct row shape; 10**9: every row in one pass.
    monkeypatch.setattr(shared_prefix, "PASS_COST", pass_cost)
    images = [s.images for s in samples[:12]]
    prompts = [s.prompt for s in samples[:12]]
    digits = [str(n) for n in range(10)]  # one token each: one column per candidate
    candidates = [digits, ["yes", "no"], ["1", "2", "three"], [], ["red", "blue", "green"]] * 2
    candidates += [["a", "b"], ["gray", "purple", "small", "large", "circle", "star"]]
    encode = pipeline.processor.tokenizer.encode
    assert all(len(encode(digit, add_special_tokens=False)) == 1 for digit in digits)
    expected = pipeline.score_batch(images, prompts, candidates, batch_size=12)
    got = shared_prefix.score_candidates(pipeline, images, prompts, candidates)
    assert [len(row) for row in got] == [len(row) for row in candidates]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine == pytest.approx(theirs, abs=1e-5)
        if mine:  # the same answer
            assert mine.index(max(mine)) == theirs.index(max(theirs))


def test_rows_are_grouped_by_length():
    one_token = ([1, 2], [1, 2])  # an answer token and the closing one: one column
    shapes = [(60, 20), (5, 1), (61, 20), (6, 1), (59, 20), (5, 2)]  # suffix, candidates
    rows = [shared_prefix._Row([7] * length, [one_token] * count) for length, count in shapes]
    groups = shared_prefix._groups(rows)
    assert sorted(sorted(group) for group in groups) == [[0, 2, 4], [1, 3, 5]]
    assert shared_prefix._groups(rows[:1]) == [[0]]


def test_a_prompt_too_short_to_share_is_left_to_the_pipeline(pipeline):
    with pytest.raises(shared_prefix.Unshareable, match="no prefix to share"):
        shared_prefix._read_prefixes(pipeline, [[]], [[5]], own_tokens=1)


def test_the_backend_falls_back_for_connectors_inside_the_language_model(
    pipeline, samples, monkeypatch
):
    backend = LocalBackend.from_pipeline(pipeline, "tiny")
    assert shared_prefix.supports(pipeline)
    assert backend.generation_settings()["shared_prefix"] is True
    requests = [Request(s.images, s.prompt, 8) for s in samples[:4]]
    shared = backend.generate(requests)
    monkeypatch.setattr(pipeline.model.connector, "acts_inside_language_model", True)
    assert not shared_prefix.supports(pipeline)
    assert backend.generation_settings()["padding_side"] == "left"
    assert backend.generate(requests) == shared


def test_a_pipeline_that_changes_how_it_answers_is_not_stepped_around(pipeline):
    class Shouting(type(pipeline)):
        def chat_batch(self, images, prompts, **kwargs):
            return [answer.upper() for answer in super().chat_batch(images, prompts, **kwargs)]

    shouting = Shouting(pipeline.model, pipeline.processor)
    assert not shared_prefix.supports(shouting)
    backend = LocalBackend.from_pipeline(shouting, "tiny")
    (answer,) = backend.generate([Request([], "Two?", 4)])
    assert answer == answer.upper()
