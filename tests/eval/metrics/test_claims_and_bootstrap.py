"""Exact claim scoring against a hand-made scene; the paired bootstrap's limits."""

import pytest

from ocelli.eval.metrics import claim_metrics, extract_claims, paired_bootstrap, score_description
from ocelli.world import Scene, SceneObject


def _scene():
    # 96 px: the square's centre is in the middle cell, the star's in the top right one.
    square = SceneObject(0, "square", "green", "large", 16.0, [48, 48], [32, 32, 64, 64])
    square.occluded_by = [1]
    star = SceneObject(1, "star", "red", "small", 8.0, [80, 12], [72, 4, 88, 20], label="cat")
    return Scene("s", 96, 96, "noise", 0, [square, star])


def test_the_worlds_own_captions_are_fully_faithful():
    from ocelli.world.text_en import detailed_caption as english
    from ocelli.world.text_zh import detailed_caption as chinese

    for text, lang in ((english(_scene()), "en"), (chinese(_scene()), "zh")):
        score = score_description(text, _scene(), lang)
        assert (score.precision, score.recall) == (1.0, 1.0), (text, score)


def test_claims_by_hand():
    text = (
        "The image shows 3 objects on a noisy background. A large green square is in the "
        "center. A small blue star is at the top right."
    )
    claims = extract_claims(text)
    assert claims == [
        ("count", 3),
        ("background", "noise"),
        ("exists", "green", "square"),
        ("size", "green", "square", "large"),
        ("position", "green", "square", "center"),
        ("exists", "blue", "star"),
        ("size", "blue", "star", "small"),
        ("position", "blue", "star", "top_right"),
    ]
    score = score_description(text, _scene())
    assert score.precision == pytest.approx(4 / 8)  # background and the square's 3 claims
    # 10 facts: count, background, 3 per object, the occlusion and the label.
    assert len(score.facts) == 10
    assert score.recall == pytest.approx(4 / 10)
    metrics = claim_metrics([score, score_description("", _scene())])
    assert metrics["precision"] == pytest.approx(4 / 8)
    assert metrics["recall"] == pytest.approx(4 / 20)
    assert metrics["macro_precision"] == pytest.approx((0.5 + 1.0) / 2)


def test_label_and_occlusion_claims_in_chinese():
    text = "中间有一个大的绿色正方形，被蓝色星形部分遮挡。右上方有一个小的红色星形，上面写着“dog”。"
    claims = extract_claims(text, "zh")
    assert ("hidden_by", "green", "square", "blue", "star") in claims
    assert ("label", "red", "star", "dog") in claims
    score = score_description(text, _scene(), "zh")
    wrong = [c for c in score.claims if c not in score.faithful]
    assert wrong == [
        ("exists", "blue", "star"),
        ("hidden_by", "green", "square", "blue", "star"),
        ("label", "red", "star", "dog"),
    ]


def test_paired_bootstrap_limits_and_seed():
    same = paired_bootstrap([1, 0, 1, 0], [1, 0, 1, 0])
    assert (same["diff"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)
    better = paired_bootstrap([0] * 5, [1] * 5)
    assert (better["ci_low"], better["ci_high"], better["p_b_not_better"]) == (1.0, 1.0, 0.0)
    a, b = [1, 0, 1, 1, 0, 0, 1, 0], [1, 1, 1, 1, 0, 1, 1, 0]
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    assert paired_bootstrap(a, b)["diff"] == pytest.approx(2 / 8)
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap([1], [1, 0])
