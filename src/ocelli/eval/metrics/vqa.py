"""VQAv2 accuracy as the official evaluation script computes it.

An answer scores min(#annotators who gave it / 3, 1), averaged over the ten subsets of
the reference answers that leave one annotator out. Before matching, answers are
normalised the official way: punctuation rules, lower case, number words to digits,
articles dropped, apostrophe-less contractions restored. Two quirks of the official
script are kept on purpose, because figures are only comparable when they are computed
the same way: normalisation is applied only when the reference answers disagree, and
the full-stop rule removes at most 32 full stops (the script passes `re.UNICODE` where
`re.sub` expects a count).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_PUNCTUATION = ';/[]"{}()=+\\_-><@`,?!'
_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")
# The official pattern is "(?!<=\d)(\.)(?!\d)": its first group is a look-ahead for the
# text "<=" + digit, not a look-behind, so in effect a full stop not followed by a digit.
_FULL_STOP = re.compile(r"(?!<=\d)(\.)(?!\d)")
_OFFICIAL_SUB_COUNT = int(re.UNICODE)  # see the module docstring
_NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
_ARTICLES = frozenset({"a", "an", "the"})

# Contractions the official table restores. Each accepts the spellings that leave out
# exactly one of its apostrophes ("couldnt've" and "couldn'tve", not "couldntve").
# Forms starting with "I" are absent: the table's capitalised keys never match the
# lower-cased words they are compared with.
_CONTRACTIONS = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've
hasn't haven't he'd he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am
mightn't mightn't've might've mustn't must've needn't not've o'clock oughtn't 'ow's'at
shan't she'd've should've shouldn't shouldn't've somebody'd've somebody'll somebody's
someone'd someone'd've someone'll someone's something'd something'd've something'll
that's there'd there'd've there're there's they'd they'd've they'll they're they've
'twas wasn't we'd've we've weren't what'll what're what's what've when's where'd
where's where've who'd who'd've who'll who's who've why'll why're why's won't would've
wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've
""".split()
# Words the bare-spelling rule would wrongly turn into contractions ("wed", "shed",
# "ill", "its", "well", "were", "id" are English words), and one official oddity.
_NOT_RESTORED = frozenset({"somebodyd"})
_EXTRA = {"somebody'd": "somebodyd"}


def _contraction_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for canonical in _CONTRACTIONS:
        for index, char in enumerate(canonical):
            if char == "'":
                bare = canonical[:index] + canonical[index + 1 :]
                if bare not in _NOT_RESTORED:
                    table[bare] = canonical
    table.update(_EXTRA)
    return table


CONTRACTIONS: dict[str, str] = _contraction_table()


def process_punctuation(text: str) -> str:
    """The official punctuation rule: a mark next to a space, or any mark in a text with a
    digit-comma-digit group, is deleted; otherwise it becomes a space."""
    out = text
    delete_all = _DIGIT_COMMA.search(text) is not None
    for mark in _PUNCTUATION:
        if delete_all or f"{mark} " in text or f" {mark}" in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _FULL_STOP.sub("", out, count=_OFFICIAL_SUB_COUNT)


def process_digits_articles(text: str) -> str:
    """Lower case, number words to digits, articles dropped, contractions restored."""
    words = [_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in _ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def normalize_vqa_answer(text: str) -> str:
    """The full official normalisation of one answer."""
    return process_digits_articles(process_punctuation(_clean_space(text)))


def _clean_space(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def vqa_accuracy(prediction: str, references: Sequence[str]) -> float:
    """Official VQAv2 accuracy of one predicted answer against the annotators' answers
    (normally ten)."""
    if not references:
        raise ValueError("vqa_accuracy needs at least one reference answer")
    references = [_clean_space(ref) for ref in references]
    prediction = _clean_space(prediction)
    if len(set(references)) > 1:
        references = [process_digits_articles(process_punctuation(r)) for r in references]
        prediction = process_digits_articles(process_punctuation(prediction))
    scores = []
    for left_out in range(len(references)):
        others = references[:left_out] + references[left_out + 1 :]
        matches = sum(1 for ref in others if ref == prediction)
        scores.append(min(1.0, matches / 3))
    return sum(scores) / len(scores)
