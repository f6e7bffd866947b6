"""MMBench-style option extraction and CircularEval by hand."""

import pytest

from ocelli.eval.metrics import circular_metrics, extract_choice, format_options, rotations

OPTIONS = ["red", "blue", "green", "yellow"]


def test_rotations_and_format():
    assert rotations(["a", "b", "c"]) == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    assert format_options(["red", "blue"]) == "A. red\nB. blue"


@pytest.mark.parametrize(
    "answer, letter",
    [
        ("B", "B"),
        ("B.", "B"),
        ("(C) green", "C"),
        ("D) yellow", "D"),
        ("The answer is blue.", "B"),
        ("red or blue", None),  # two options named
        ("Apple", None),  # starts with A but is not the letter A
        ("E", None),  # not an option letter
        ("", None),
    ],
)
def test_extract_choice(answer, letter):
    assert extract_choice(answer, OPTIONS) == letter


def test_circular_eval_by_hand():
    rows = [("q1", r, 4, True) for r in range(4)]
    rows += [("q2", 0, 4, True), ("q2", 1, 4, True), ("q2", 2, 4, False), ("q2", 3, 4, True)]
    rows += [("q3", 0, 4, True), ("q3", 1, 4, True)]  # two rotations failed: left out
    metrics = circular_metrics(rows)
    assert metrics == {"circular_accuracy": 0.5, "vanilla_accuracy": 1.0, "num_questions": 2}
