"""CHAIR_i / CHAIR_s by hand, with the world's synonyms and plurals in both languages."""

import pytest

from ocelli.eval.metrics import chair_caption, chair_metrics, object_mentions


@pytest.mark.parametrize(
    "caption, lang, mentions",
    [
        ("A red circle and two blue discs.", "en", ["circle", "circle"]),
        ("Boxes, a rhombus and three STARS", "en", ["square", "diamond", "star"]),
        ("A round red thing", "en", []),  # an adjective, not an object
        ("左上方有一个红色五角星和一个方块。", "zh", ["star", "square"]),
        ("正方形和五角形", "zh", ["square", "pentagon"]),  # longest match: no extra 方形
        ("一个圆和一个圆形", "zh", ["circle", "circle"]),
    ],
)
def test_mentions(caption, lang, mentions):
    assert object_mentions(caption, lang) == mentions


def test_chair_by_hand():
    captions = [
        chair_caption("A red circle and two blue discs.", ["circle", "square"]),
        chair_caption("A big star next to a box.", ["star"]),
        chair_caption("A plain background.", ["triangle"]),
        chair_caption("一个菱形和一个三角形", ["triangle"], lang="zh"),
    ]
    metrics = chair_metrics(captions)
    # Mentions: 2 + 2 + 0 + 2 = 6, hallucinated: box (square) and 菱形 (diamond) = 2.
    assert metrics["chair_i"] == pytest.approx(2 / 6)
    assert metrics["chair_s"] == pytest.approx(2 / 4)
    # Objects of the images mentioned: circle; star; none; triangle = 3 of 5.
    assert metrics["recall"] == pytest.approx(3 / 5)
    assert chair_metrics([])["chair_i"] == 0.0
