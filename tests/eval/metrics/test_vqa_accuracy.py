"""VQAv2 accuracy and normalisation against values worked out by hand from the official
script's rules (quirks included)."""

import pytest

from ocelli.eval.metrics import normalize_vqa_answer, vqa_accuracy
from ocelli.eval.metrics.vqa import CONTRACTIONS


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The Dog's ", "dog's"),
        ("It isnt two.", "it isn't 2"),
        ("3,000 people", "3000 people"),
        ("red-ish", "red ish"),
        ("yes, it is", "yes it is"),
        ("Dont", "don't"),
        ("3.5", "3.5"),
        ("a.b.c", "abc"),  # full stops are removed first: one word, no article left
        ("None of them", "0 of them"),
        ("couldntve", "couldntve"),  # no apostrophe-less spelling of two apostrophes
        ("couldnt've", "couldn't've"),
        ("somebody'd", "somebodyd"),  # the official table's reversed entry
        ("Im", "im"),  # capitalised keys never match lower-cased words
        ("\tten\n", "10"),
    ],
)
def test_official_normalisation(text, expected):
    assert normalize_vqa_answer(text) == expected


def test_contraction_table_keeps_english_words():
    for word in ("wed", "shed", "ill", "its", "well", "were", "id", "hell"):
        assert word not in CONTRACTIONS
    assert CONTRACTIONS["yall'd've"] == "y'all'd've"
    assert CONTRACTIONS["'ows'at"] == "'ow's'at"


def test_leave_one_out_average():
    references = ["2"] * 3 + ["3"] * 7
    # "two" normalises to "2": the 3 subsets without a "2" keep 2 matches (2/3), the 7
    # others keep all 3 (1.0): (3 * 2/3 + 7) / 10.
    assert vqa_accuracy("two", references) == pytest.approx(0.9)
    assert vqa_accuracy("three", references) == pytest.approx(1.0)
    assert vqa_accuracy("cat", ["cat"] + ["dog"] * 9) == pytest.approx(0.3)
    assert vqa_accuracy("4", references) == 0.0


def test_unanimous_references_are_not_normalised():
    # The official script normalises only when the annotators disagree.
    assert vqa_accuracy("yes", ["yes"] * 10) == 1.0
    assert vqa_accuracy("Yes", ["yes"] * 10) == 0.0
    # With one dissenting annotator everything is normalised; "yes" then keeps 8 or 9
    # matches in every subset.
    assert vqa_accuracy("Yes", ["yes"] * 9 + ["no"]) == pytest.approx(1.0)


def test_no_references_is_an_error():
    with pytest.raises(ValueError, match="at least one reference"):
        vqa_accuracy("yes", [])
