import json

import pytest

from ocelli.errors import DataError
from ocelli.eval.world_vqa import evaluate_world_vqa, is_correct, normalize_answer, summarize


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Red.", "red"),
        (" yes\n", "yes"),
        ("是。", "是"),
        ("3", "3"),
        ("Blue circle", "blue circle"),
    ],
)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


def test_reasoning_is_scored_on_the_verdict():
    truth = "Yes. There are 3 circles and 1 square."
    assert is_correct("yes. There are 2 circles.", truth, "reasoning")
    assert not is_correct("No. There are 3 circles and 1 square.", truth, "reasoning")
    assert not is_correct("yes, red", "yes", "existence")


class FakePipeline:
    def __init__(self, answers):
        self.answers = answers
        self.calls = []

    def chat_batch(self, images, prompts, **kwargs):
        self.calls.append(len(prompts))
        return [self.answers[p] for p in prompts]


def test_evaluate_scores_every_question_by_type_and_language(tmp_path):
    rows = [
        {
            "id": 1,
            "image": "a.png",
            "lang": "en",
            "type": "count",
            "question": "How many?",
            "answer": "2",
        },
        {
            "id": 2,
            "image": "a.png",
            "lang": "zh",
            "type": "count",
            "question": "几个?",
            "answer": "3",
        },
        {
            "id": 3,
            "image": "b.png",
            "lang": "en",
            "type": "existence",
            "question": "Any?",
            "answer": "yes",
        },
    ]
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pipeline = FakePipeline({"How many?": "2", "几个?": "4", "Any?": "Yes."})
    result = evaluate_world_vqa(pipeline, tmp_path, batch_size=2, progress=False)
    assert pipeline.calls == [2, 1]
    assert result.metrics["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert result.metrics["by_type"] == {"count": 0.5, "existence": 1.0}
    assert result.metrics["by_lang"] == {"en": 1.0, "zh": 0.0}
    assert [r["correct"] for r in result.records] == [True, False, True]


def test_summarize_of_nothing_is_zero():
    assert summarize([])["accuracy"] == 0.0


def test_bad_question_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        evaluate_world_vqa(FakePipeline({}), tmp_path, progress=False)
    (tmp_path / "questions.jsonl").write_text('{"image": "a.png"}\n')
    with pytest.raises(DataError, match="questions.jsonl:1: missing field"):
        evaluate_world_vqa(FakePipeline({}), tmp_path, progress=False)


def test_blind_baseline_answers_the_most_common_training_answer(tmp_path):
    from ocelli.eval.world_vqa import blind_baseline

    train = [
        {"image": "a.png", "lang": "en", "type": "existence", "question": "q", "answer": a}
        for a in ("yes", "yes", "no")
    ]
    (tmp_path / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    records = [
        {"lang": "en", "type": "existence", "answer": "yes"},
        {"lang": "en", "type": "existence", "answer": "no"},
        {"lang": "zh", "type": "existence", "answer": "是"},
    ]
    metrics = blind_baseline(tmp_path, records)
    assert metrics["accuracy"] == pytest.approx(1 / 3, abs=1e-4)
