"""Multiple choice the MMBench way: option letters, answer extraction and CircularEval.

CircularEval (Liu et al. 2023): a question with N options is asked N times, the options
rotated by one place each time; it counts as solved only if every rotation is answered
right. A model that favours a letter, or guesses, cannot pass it by luck.

Extraction is rule-based and never calls a model (MMBench falls back to a GPT judge):
an answer that is, or starts with, one option letter ("B", "B.", "(B)", "B) red") picks
that letter; otherwise the one option whose text the answer contains; otherwise the
answer is unparsed and counts as wrong (and is counted separately).
"""

from __future__ import annotations

import re
import string
from collections import defaultdict
from collections.abc import Iterable, Sequence

LETTERS = string.ascii_uppercase


def rotations(options: Sequence[str]) -> list[list[str]]:
    """The N circular shifts of the options, the original order first."""
    return [list(options[shift:]) + list(options[:shift]) for shift in range(len(options))]


def format_options(options: Sequence[str]) -> str:
    return "\n".join(f"{LETTERS[i]}. {option}" for i, option in enumerate(options))


def extract_choice(answer: str, options: Sequence[str]) -> str | None:
    """The option letter an answer picks, or None when it picks none or several."""
    letters = LETTERS[: len(options)]
    text = answer.strip()
    match = re.match(rf"^[(\[]?([{letters}])(?:[).\]:,]|\s|$)", text)
    if match:
        return match.group(1)
    lowered = text.lower()
    hits = [
        LETTERS[i]
        for i, option in enumerate(options)
        if re.search(rf"(?<!\w){re.escape(option.lower())}(?!\w)", lowered)
    ]
    return hits[0] if len(hits) == 1 else None


def circular_metrics(rows: Iterable[tuple[str, int, int, bool]]) -> dict[str, float]:
    """`rows` are (question id, rotation index, number of rotations, answered right).
    CircularEval accuracy
    (all rotations right), vanilla accuracy (rotation 0 only) and the number of questions.
    A question with a missing rotation (a failed request) is left out of both."""
    by_question: dict[str, dict[int, bool]] = defaultdict(dict)
    expected: dict[str, int] = {}
    for question_id, rotation, num_rotations, correct in rows:
        by_question[question_id][rotation] = bool(correct)
        expected[question_id] = num_rotations
    complete = {q: r for q, r in by_question.items() if set(r) == set(range(expected[q]))}
    if not complete:
        return {"circular_accuracy": 0.0, "vanilla_accuracy": 0.0, "num_questions": 0}
    return {
        "circular_accuracy": sum(all(r.values()) for r in complete.values()) / len(complete),
        "vanilla_accuracy": sum(r[0] for r in complete.values()) / len(complete),
        "num_questions": len(complete),
    }
