"""CIDEr-D pinned to pycocoevalcap's Cider to 1e-6, and hand-worked limits; BLEU-4,
ROUGE-L and METEOR through pycocoevalcap after its PTB tokenizer."""

import pytest

from ocelli.eval.metrics import caption_metrics, cider_d

REFERENCES = {
    "1": ["a red circle and a blue square", "a picture showing a red circle and a blue square"],
    "2": ["a green star", "an image with a green star"],
    "3": ["a large yellow triangle at the top", "a yellow triangle"],
    "4": ["two small gray hexagons on a noisy background", "two gray hexagons", "gray hexagons"],
    "5": ["a pink diamond", "a picture showing a pink diamond"],
}
PREDICTIONS = {
    "1": "a red circle and a blue circle",
    "2": "a green star and a green star",
    "3": "a small yellow triangle",
    "4": "",
    "5": "a pink diamond",
}


def test_cider_d_equals_pycocoevalcap():
    from pycocoevalcap.cider.cider import Cider

    ours, per_image = cider_d(REFERENCES, PREDICTIONS)
    theirs, their_per_image = Cider().compute_score(
        REFERENCES, {key: [text] for key, text in PREDICTIONS.items()}
    )
    assert ours == pytest.approx(float(theirs), abs=1e-6)
    for key, value in zip(REFERENCES, their_per_image, strict=True):
        assert per_image[key] == pytest.approx(float(value), abs=1e-6)


def test_cider_d_by_hand():
    # A caption equal to its only reference, no n-gram shared with the other image:
    # every idf is log(2), cosine 1 at every order, no length penalty: 10 * 1.
    refs = {"a": ["one big red circle"], "b": ["blue star"]}
    score, per_image = cider_d(refs, {"a": "one big red circle", "b": "x"})
    assert per_image == {"a": pytest.approx(10.0), "b": 0.0}
    # Two words have no 3- or 4-grams: those orders add 0 to the mean over 4 orders.
    _, per_image = cider_d({"a": ["red circle"], "b": ["blue star"]}, {"a": "red circle", "b": "x"})
    assert per_image["a"] == pytest.approx(10.0 * 2 / 4)
    # N-grams found in every image's references carry no weight (idf log(2/2) = 0).
    score, _ = cider_d({"a": ["red circle"], "b": ["red circle"]}, {"a": "red circle", "b": "red"})
    assert score == 0.0


def test_cider_d_input_errors():
    with pytest.raises(ValueError, match="same image ids"):
        cider_d({"a": ["x"]}, {"b": "x"})
    with pytest.raises(ValueError, match="at least one reference"):
        cider_d({"a": []}, {"a": "x"})


def test_corpus_metrics_after_ptb_tokenisation():
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.rouge.rouge import Rouge

    raw_refs = {key: [r.capitalize() + "." for r in refs] for key, refs in REFERENCES.items()}
    values, per_image = caption_metrics(
        raw_refs, PREDICTIONS, metrics=("cider", "bleu4", "rouge_l")
    )
    # PTB tokenisation lower-cases and drops the full stops: the scores of the clean text.
    res = {key: [text] for key, text in PREDICTIONS.items()}
    assert values["cider"] == pytest.approx(cider_d(REFERENCES, PREDICTIONS)[0], abs=1e-6)
    assert values["bleu4"] == pytest.approx(Bleu(4).compute_score(REFERENCES, res, verbose=0)[0][3])
    assert values["rouge_l"] == pytest.approx(Rouge().compute_score(REFERENCES, res)[0])
    assert set(per_image) == set(REFERENCES)


def test_chinese_captions_are_scored_by_character():
    values, _ = caption_metrics(
        {"1": ["一个红色圆形。"], "2": ["一个蓝色星形。"]},
        {"1": "一个红色圆形", "2": "绿色"},
        lang="zh",
        metrics=("cider",),
    )
    # Image 1 matches exactly; shared characters "一个" and "色" carry idf 0.
    assert 0 < values["cider"] < 10


@pytest.mark.slow
def test_meteor_runs_offline():
    values, _ = caption_metrics(
        {"1": ["A red circle."]}, {"1": "a red circle"}, metrics=("meteor",)
    )
    assert values["meteor"] == pytest.approx(1.0, abs=0.01)


def test_unknown_metric():
    from ocelli.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown caption metric"):
        caption_metrics({"1": ["a"]}, {"1": "a"}, metrics=("spice",))
