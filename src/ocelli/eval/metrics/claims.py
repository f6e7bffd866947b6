"""Exact scoring of an open-ended description against the scene graph.

In the spirit of FaithScore (Jing et al. 2023), but exact: the description is split into
atomic claims, each checked against the image's scene instead of by a model.

Claims (tuples, so they compare exactly):
  ("exists", color, shape)            an object of that shape (and colour, if named)
  ("size", color, shape, size)        such an object has that size
  ("position", color, shape, cell)    such an object lies in that cell of the 3x3 grid
  ("hidden_by", color, shape, color2, shape2)  the first is partly covered by the second
  ("label", color, shape, text)       such an object carries that label
  ("count", n)                        the image holds n objects
  ("background", kind)                plain, noise or texture

A description is read clause by clause as a stream of vocabulary tokens (sizes, colours,
shapes, positions, numbers, labels, the "hidden by" marker), the same way in English and
Chinese; the words come from ocelli.world, so the captions the world writes are read
back exactly. Precision = faithful distinct claims / distinct claims; recall = the
scene's facts (the claims a perfect description makes) that a faithful claim states.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ocelli.eval.metrics.chair import CHINESE_OBJECT_WORDS, ENGLISH_OBJECT_WORDS
from ocelli.world import text_en, text_zh
from ocelli.world.scenes import Scene
from ocelli.world.spec import position_key
from ocelli.world.vocab import COLORS, COLORS_ZH, SIZES, SIZES_ZH, SYNONYMS_EN, SYNONYMS_ZH

Claim = tuple
Token = tuple[str, str]  # (kind, canonical value)


def _lexicon(lang: str) -> dict[str, Token]:
    """Surface form -> token, from the world's own tables (one source of truth)."""
    en = lang == "en"
    synonyms = SYNONYMS_EN if en else SYNONYMS_ZH
    lexicon: dict[str, Token] = {}
    for color in COLORS:
        name = color if en else COLORS_ZH[color]
        for form in (name, *synonyms.get(name, ())):
            lexicon[form] = ("color", color)
    for size in SIZES:
        name = size if en else SIZES_ZH[size] + "的"
        forms = (name, *synonyms.get(size, ())) if en else (name,)
        lexicon.update({form: ("size", size) for form in forms})
    if not en:
        lexicon["中等大小的"] = ("size", "medium")
    words = ENGLISH_OBJECT_WORDS if en else CHINESE_OBJECT_WORDS
    lexicon.update({form: ("shape", shape) for form, shape in words.items()})
    # Private tables of the world's caption writers: the phrases captions are made of.
    module = text_en if en else text_zh
    for key, phrase in module._POSITIONS.items():
        lexicon[phrase.removeprefix("at the ").removeprefix("on the ").removeprefix("in the ")] = (
            "position",
            key,
        )
    for kind, word in module._BACKGROUNDS.items():
        lexicon[word] = ("background", kind)
    lexicon.update({"object": ("object", ""), "objects": ("object", ""), "物体": ("object", "")})
    lexicon.update({"hidden": ("hidden", ""), "被": ("hidden", "")})
    if en:
        lexicon["centre"] = lexicon["middle"] = ("position", "center")
    return lexicon


_LEXICONS = {lang: _lexicon(lang) for lang in ("en", "zh")}
_EN_NUMBERS = {
    w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten".split())
}


def tokenize(text: str, lang: str = "en") -> list[list[Token]]:
    """Clauses of vocabulary tokens; everything else is dropped."""
    clauses = re.split(r"[.;。；!?！？]\s*" if lang == "en" else r"[.;。；!?！？，,]", text)
    return [toks for clause in clauses if (toks := _clause_tokens(clause, lang))]


def _clause_tokens(clause: str, lang: str) -> list[Token]:
    lexicon = _LEXICONS[lang]
    pieces = re.split(r"([\"“「][^\"“”「」]+[\"”」])", clause)
    tokens: list[Token] = []
    for piece in pieces:
        if re.fullmatch(r"[\"“「].+[\"”」]", piece):
            tokens.append(("label", piece[1:-1]))
        elif lang == "en":
            tokens += _english_tokens(piece.lower(), lexicon)
        else:
            tokens += _longest_match_tokens(piece, lexicon)
    return tokens


def _english_tokens(text: str, lexicon: dict[str, Token]) -> list[Token]:
    words = re.findall(r"[a-z]+(?:-[a-z]+)*|\d+", text)
    tokens, index = [], 0
    while index < len(words):
        pair = " ".join(words[index : index + 2])
        if pair in lexicon:  # "top left" before "top"
            tokens.append(lexicon[pair])
            index += 2
            continue
        word = words[index]
        if word.isdigit() or word in _EN_NUMBERS:
            tokens.append(("number", _EN_NUMBERS.get(word, word)))
        elif word in lexicon:
            tokens.append(lexicon[word])
        index += 1
    return tokens


def _longest_match_tokens(text: str, lexicon: dict[str, Token]) -> list[Token]:
    longest = max(len(form) for form in lexicon)
    tokens, index = [], 0
    while index < len(text):
        digits = re.match(r"\d+", text[index:])
        if digits:
            tokens.append(("number", digits.group()))
            index += len(digits.group())
            continue
        for length in range(min(longest, len(text) - index), 0, -1):
            if text[index : index + length] in lexicon:
                tokens.append(lexicon[text[index : index + length]])
                index += length
                break
        else:
            index += 1
    return tokens


@dataclass
class _Phrase:
    color: str | None
    shape: str | None
    size: str | None = None


@dataclass
class _Clause:
    subjects: list[_Phrase] = field(default_factory=list)
    hiders: list[_Phrase] = field(default_factory=list)
    positions: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)


def _read_clause(tokens: list[Token]) -> _Clause:
    clause = _Clause()
    pending: dict[str, str] = {}
    after_hidden = False
    for kind, value in tokens:
        if kind in ("color", "size", "number"):
            pending[kind] = value
        elif kind in ("shape", "object"):
            if kind == "object" and "number" in pending and "color" not in pending:
                clause.claims.append(("count", int(pending["number"])))
            elif kind == "shape" or "color" in pending:
                phrase = _Phrase(pending.get("color"), value or None, pending.get("size"))
                (clause.hiders if after_hidden else clause.subjects).append(phrase)
            pending = {}
        elif kind == "hidden":
            after_hidden = True
        elif kind == "position" and not after_hidden:
            clause.positions.append(value)
        elif kind == "label":
            clause.labels.append(value)
        elif kind == "background":
            clause.claims.append(("background", value))
    return clause


def extract_claims(description: str, lang: str = "en") -> list[Claim]:
    """The distinct atomic claims of a description, in the order first made."""
    claims: list[Claim] = []
    subject: _Phrase | None = None
    for tokens in tokenize(description, lang):
        clause = _read_clause(tokens)
        claims += clause.claims
        for phrase in clause.subjects + clause.hiders:
            claims.append(("exists", phrase.color, phrase.shape))
            if phrase.size:
                claims.append(("size", phrase.color, phrase.shape, phrase.size))
        if len(clause.subjects) == 1:
            subject = clause.subjects[0]
        elif clause.subjects:
            subject = None  # a list of objects: positions and labels are ambiguous
        if subject is None:
            continue
        who = (subject.color, subject.shape)
        claims += [("position", *who, cell) for cell in clause.positions[:1]]
        claims += [("hidden_by", *who, h.color, h.shape) for h in clause.hiders]
        claims += [("label", *who, text) for text in clause.labels]
    return list(dict.fromkeys(claims))


def scene_facts(scene: Scene) -> set[Claim]:
    """Everything a complete, faithful description of the scene claims."""
    by_id = {obj.id: obj for obj in scene.objects}
    facts: set[Claim] = {("count", len(scene.objects)), ("background", scene.background)}
    for obj in scene.objects:
        who = (obj.color, obj.shape)
        facts |= {
            ("exists", *who),
            ("size", *who, obj.size),
            ("position", *who, position_key(obj, scene)),
        }
        facts |= {("hidden_by", *who, by_id[i].color, by_id[i].shape) for i in obj.occluded_by}
        if obj.label:
            facts.add(("label", *who, obj.label))
    return facts


def _matching(scene: Scene, color: str | None, shape: str | None) -> list:
    return [
        obj
        for obj in scene.objects
        if (color is None or obj.color == color) and (shape is None or obj.shape == shape)
    ]


def is_faithful(claim: Claim, scene: Scene) -> bool:
    kind = claim[0]
    if kind == "count":
        return claim[1] == len(scene.objects)
    if kind == "background":
        return claim[1] == scene.background
    objects = _matching(scene, claim[1], claim[2])
    if kind == "exists":
        return bool(objects)
    if kind == "size":
        return any(obj.size == claim[3] for obj in objects)
    if kind == "position":
        return any(position_key(obj, scene) == claim[3] for obj in objects)
    if kind == "label":
        return any(obj.label == claim[3] for obj in objects)
    if kind == "hidden_by":
        hiders = {obj.id for obj in _matching(scene, claim[3], claim[4])}
        return any(hiders & set(obj.occluded_by) for obj in objects)
    raise ValueError(f"unknown claim kind {kind!r}")


@dataclass
class ClaimScore:
    claims: list[Claim]
    faithful: list[Claim]
    facts: set[Claim]
    covered: set[Claim]

    @property
    def precision(self) -> float:
        """1.0 for a description that claims nothing: it said nothing false."""
        return len(self.faithful) / len(self.claims) if self.claims else 1.0

    @property
    def recall(self) -> float:
        return len(self.covered) / len(self.facts) if self.facts else 1.0


def score_description(description: str, scene: Scene, lang: str = "en") -> ClaimScore:
    claims = extract_claims(description, lang)
    faithful = [claim for claim in claims if is_faithful(claim, scene)]
    facts = scene_facts(scene)
    return ClaimScore(claims, faithful, facts, facts & set(faithful))


def claim_metrics(scores: list[ClaimScore]) -> dict[str, float]:
    """Micro precision and recall over all claims and facts, their F1, and the macro
    (per-description) means."""
    claims = sum(len(s.claims) for s in scores)
    faithful = sum(len(s.faithful) for s in scores)
    facts = sum(len(s.facts) for s in scores)
    covered = sum(len(s.covered) for s in scores)
    precision = faithful / claims if claims else 0.0
    recall = covered / facts if facts else 0.0
    count = len(scores) or 1
    return {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "macro_precision": sum(s.precision for s in scores) / count,
        "macro_recall": sum(s.recall for s in scores) / count,
        "num_claims": claims,
        "num_facts": facts,
        "num_descriptions": len(scores),
    }
