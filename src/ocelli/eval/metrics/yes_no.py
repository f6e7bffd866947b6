"""Yes/no benchmarks: POPE's answer parsing and metrics, MME's acc, acc+ and score.

POPE (Li et al. 2023, official evaluate.py): keep the text before the first full stop,
drop commas, split on spaces; the answer is "no" if a word is "No", "not" or "no", else
"yes". "yes" is the positive class. The yes-ratio is the share of answers parsed as yes;
far from the truth's share (0.5 on POPE) it exposes a biased model.

MME (Fu et al. 2023, official calculation.py): the lower-cased answer is taken as is if
it is "yes" or "no", otherwise its first four characters decide ("yes" in them, else
"no" in them, else "other", which is always wrong). Per subtask: acc over questions,
acc+ over images whose two questions are both right, score = 100 * (acc + acc+).

Chinese answers (ours, not in either benchmark): the text before the first "。" or "."
is "no" if it contains 否, 不 or 没, else "yes".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

_ZH_NEGATIONS = ("否", "不", "没")


def pope_parse(answer: str, lang: str = "en") -> str:
    """ "yes" or "no", exactly as POPE's evaluation reads a generated answer."""
    if lang == "zh":
        first = answer.split("。", 1)[0].split(".", 1)[0]
        return "no" if any(neg in first for neg in _ZH_NEGATIONS) else "yes"
    first = answer.split(".", 1)[0].replace(",", "")
    words = first.split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def binary_metrics(predictions: Sequence[str], truths: Sequence[str]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 ("yes" positive), yes-ratio and the confusion
    counts, over parsed answers ("yes"/"no"). A ratio with a zero denominator is 0."""
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} predictions for {len(truths)} truths")
    pairs = list(zip(predictions, truths, strict=True))
    tp = sum(p == "yes" and t == "yes" for p, t in pairs)
    fp = sum(p == "yes" and t == "no" for p, t in pairs)
    tn = sum(p == "no" and t == "no" for p, t in pairs)
    fn = sum(p == "no" and t == "yes" for p, t in pairs)
    total = len(pairs)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    return {
        "accuracy": _ratio(tp + tn, total),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "yes_ratio": _ratio(sum(p == "yes" for p in predictions), total),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "num_questions": total,
    }


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def mme_parse(answer: str) -> str:
    """ "yes", "no" or "other", as MME's calculation script reads an answer."""
    text = answer.lower()
    if text in ("yes", "no"):
        return text
    prefix = text[:4]
    if "yes" in prefix:
        return "yes"
    if "no" in prefix:
        return "no"
    return "other"


def mme_metrics(rows: Iterable[tuple[str, str, bool]]) -> dict[str, dict[str, float]]:
    """Per subtask acc, acc_plus and score (percent-based, 0 to 200), plus "total" (the sum
    of the subtask scores, as MME reports perception and cognition totals).

    `rows` are (subtask, image id, answered correctly), two per image."""
    by_subtask: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))
    for subtask, image_id, correct in rows:
        by_subtask[subtask][image_id].append(bool(correct))
    result: dict[str, dict[str, float]] = {}
    for subtask in sorted(by_subtask):
        images = by_subtask[subtask]
        answers = [ok for oks in images.values() for ok in oks]
        acc = sum(answers) / len(answers)
        acc_plus = sum(all(oks) for oks in images.values()) / len(images)
        result[subtask] = {
            "acc": 100 * acc,
            "acc_plus": 100 * acc_plus,
            "score": 100 * (acc + acc_plus),
            "num_images": len(images),
        }
    return result
