"""POPE parsing and metrics, MME parsing, acc, acc+ and score, by hand."""

import pytest

from ocelli.eval.metrics import binary_metrics, mme_metrics, mme_parse, pope_parse


@pytest.mark.parametrize(
    "answer, parsed",
    [
        ("Yes, there is a cat.", "yes"),
        ("No.", "no"),
        ("There is not a dog in the image", "no"),
        ("no, there isn't", "no"),
        ("I think so. No wait", "yes"),  # only the first sentence counts
        ("Nope", "yes"),
        ("Not really", "yes"),  # "Not" with a capital is not in POPE's list
        ("", "yes"),
    ],
)
def test_pope_parse_is_the_official_rule(answer, parsed):
    assert pope_parse(answer) == parsed


@pytest.mark.parametrize("answer, parsed", [("否", "no"), ("是的。", "yes"), ("没有。是", "no")])
def test_pope_parse_chinese(answer, parsed):
    assert pope_parse(answer, "zh") == parsed


def test_binary_metrics_by_hand():
    metrics = binary_metrics(["yes", "yes", "no", "no", "yes"], ["yes", "no", "no", "yes", "yes"])
    assert (metrics["tp"], metrics["fp"], metrics["tn"], metrics["fn"]) == (2, 1, 1, 1)
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    assert metrics["precision"] == pytest.approx(2 / 3)
    assert metrics["recall"] == pytest.approx(2 / 3)
    assert metrics["f1"] == pytest.approx(2 / 3)
    assert metrics["yes_ratio"] == pytest.approx(3 / 5)


def test_yes_ratio_of_a_biased_model_is_not_one_half():
    # One popular harness always printed 0.5 here.
    metrics = binary_metrics(["yes"] * 4, ["yes", "no", "yes", "no"])
    assert metrics["yes_ratio"] == 1.0
    assert metrics["precision"] == 0.5 and metrics["recall"] == 1.0
    assert metrics["f1"] == pytest.approx(2 / 3)
    none = binary_metrics(["no"] * 2, ["no", "no"])
    assert none["precision"] == 0.0 and none["f1"] == 0.0 and none["accuracy"] == 1.0


@pytest.mark.parametrize(
    "answer, parsed",
    [
        ("Yes", "yes"),
        ("Yes, it is", "yes"),
        ("Nope", "no"),
        ("I don't know", "other"),
        ("n", "other"),
    ],
)
def test_mme_parse(answer, parsed):
    assert mme_parse(answer) == parsed


def test_mme_acc_acc_plus_score_by_hand():
    rows = [
        ("count", "img1", True),
        ("count", "img1", True),
        ("count", "img2", True),
        ("count", "img2", False),
        ("color", "img1", False),
        ("color", "img1", False),
    ]
    metrics = mme_metrics(rows)
    assert metrics["count"] == {"acc": 75.0, "acc_plus": 50.0, "score": 125.0, "num_images": 2}
    assert metrics["color"]["score"] == 0.0
