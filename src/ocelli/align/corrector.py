"""A Woodpecker-style (Yin et al. 2023) post-hoc corrector of answers about world images.

Training-free, after generation:
1. key concepts: the answer's atomic claims, read by the exact claim extractor of
   evaluation (ocelli.eval.metrics.claims, English and Chinese);
2. questions: one verification question per claim, in the world's own question
   templates (existence yes/no; size, count and label as open questions);
3. validation with experts: the shape detector (ocelli.align.detector) reconstructs the
   scene, and each claim is checked against it with the evaluator's exact checker; the
   model's own answers to the questions are collected too and decide the claims the
   detector cannot (labels, what hides what);
4. claims from what was seen: each refuted sentence is rewritten from the detected
   object it most likely meant (same shape, else same colour), in the world's caption
   wording, or dropped when nothing fits;
5. correction with evidence: every kept or fixed object gets its box, [x0,y0,x1,y1].

A yes/no answer to an existence question ("Is there a red star?", also with POPE's or
MME's "Please answer yes or no." after it), bare or going on ("Yes, there is a red
star."), is checked as the question's claim and answered "Yes"/"No" afresh if wrong. An image the detector cannot read (not a
world image) or a missing image is reported, never guessed at: the answer comes back
unchanged with `verified=False` and the reason.

    corrector = Corrector(pipeline)          # pipeline optional: the model's own VQA
    result = corrector.correct("scene.png", "A red star is on the left.")
    result.text, result.claims, result.verified
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ocelli.align.detector import ShapeDetector, UnverifiableImage
from ocelli.data.images import ImageInput, load_image
from ocelli.errors import ImageError
from ocelli.eval.metrics.chair import CHINESE_OBJECT_WORDS, ENGLISH_OBJECT_WORDS
from ocelli.eval.metrics.claims import Claim, extract_claims, is_faithful
from ocelli.eval.metrics.yes_no import pope_parse
from ocelli.world import text as world_text
from ocelli.world.scenes import Scene, SceneObject
from ocelli.world.spec import Ref, position_key

# What the detector's scene can settle; labels and occlusion need the model's VQA.
DETECTOR_KINDS = ("exists", "size", "position", "count", "background")
Asker = Callable[[ImageInput, Sequence[str]], list[str]]


@dataclass
class ClaimCheck:
    """One claim, its verification question, and what each expert said."""

    claim: Claim
    question: str | None = None
    detector: bool | None = None  # None: the detector cannot settle this claim
    vqa_answer: str | None = None
    vqa: bool | None = None
    sentence: int = -1

    @property
    def verdict(self) -> bool | None:
        """The detector's verdict where it has one, else the model's VQA, else None."""
        return self.detector if self.detector is not None else self.vqa

    def to_dict(self) -> dict[str, Any]:
        return {
            "claim": list(self.claim),
            "question": self.question,
            "detector": self.detector,
            "vqa_answer": self.vqa_answer,
            "vqa": self.vqa,
            "verdict": self.verdict,
        }


@dataclass
class Correction:
    text: str
    original: str
    verified: bool
    reason: str = ""
    claims: list[ClaimCheck] = field(default_factory=list)
    objects: list[SceneObject] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.text != self.original

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "original": self.original,
            "verified": self.verified,
            "reason": self.reason,
            "claims": [check.to_dict() for check in self.claims],
            "objects": [
                {"color": o.color, "shape": o.shape, "size": o.size, "box": o.bbox}
                for o in self.objects
            ],
            "changes": self.changes,
        }


def detect_lang(text: str) -> str:
    return "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"


class Corrector:
    """`pipeline` (optional) answers the verification questions; `evidence` appends
    boxes to the objects the answer keeps."""

    def __init__(
        self,
        pipeline: Any = None,
        detector: ShapeDetector | None = None,
        evidence: bool = True,
        max_new_tokens: int = 8,
    ) -> None:
        self.detector = detector or ShapeDetector()
        self.evidence = evidence
        self.ask: Asker | None = None
        if pipeline is not None:
            self.ask = lambda image, questions: pipeline.chat_batch(
                [[image]] * len(questions), list(questions), max_new_tokens=max_new_tokens
            )

    def correct(
        self, image: ImageInput, answer: str, question: str | None = None, lang: str | None = None
    ) -> Correction:
        lang = lang or detect_lang(answer + (question or ""))
        try:
            picture = load_image(image)
            scene = self.detector.detect(picture)
        except (ImageError, UnverifiableImage) as exc:
            return Correction(answer, answer, False, f"cannot verify: {exc}")
        verdict = _yes_no_about_existence(question, answer, lang)
        if verdict is not None:
            return self._correct_verdict(picture, scene, answer, question or "", verdict, lang)
        sentences = _sentences(answer, lang)
        checks = [
            ClaimCheck(claim, sentence=index)
            for index, sentence in enumerate(sentences)
            for claim in extract_claims(sentence, lang)
        ]
        if not checks:
            return Correction(answer, answer, True, "no claims to verify", objects=scene.objects)
        for check in checks:
            if check.claim[0] in DETECTOR_KINDS:
                check.detector = is_faithful(check.claim, scene)
        self._ask_model(picture, checks, lang)
        rewritten, changes, kept = _rewrite(sentences, checks, scene, lang, self.evidence)
        return Correction(rewritten, answer, True, "", checks, kept, changes)

    def _ask_model(self, picture: Any, checks: list[ClaimCheck], lang: str) -> None:
        for check in checks:
            check.question = verification_question(check.claim, lang)
        asked = [c for c in checks if c.question]
        if self.ask is None or not asked:
            return
        for check, reply in zip(asked, self.ask(picture, [c.question for c in asked]), strict=True):
            check.vqa_answer = reply
            check.vqa = _vqa_agrees(check.claim, reply, lang)

    def _correct_verdict(
        self, picture: Any, scene: Scene, answer: str, question: str, said_yes: bool, lang: str
    ) -> Correction:
        question = _ANSWER_INSTRUCTION[lang].sub("", question.strip())
        checks = [ClaimCheck(claim, question) for claim in extract_claims(question, lang)]
        for check in checks:
            check.detector = is_faithful(check.claim, scene)
        truth = all(check.detector for check in checks)
        if truth == said_yes:
            return Correction(answer, answer, True, "", checks, scene.objects)
        yes, no = ("Yes", "No") if lang == "en" else ("是", "否")
        fixed = yes if truth else no
        return Correction(
            fixed, answer, True, "", checks, scene.objects, [f"{answer!r} -> {fixed!r}"]
        )


# How a yes/no answer opens: a bare one, or one that goes on ("Yes, there is a red star.").
_VERDICT_HEAD = {"en": re.compile(r"(yes|no)\b"), "zh": re.compile(r"(是|否|不|没|有)")}
# Instructions that may follow the question itself (POPE's and MME's variants).
_ANSWER_INSTRUCTION = {
    "en": re.compile(r"\s*(please\s+)?answer\s+(with\s+)?(a\s+)?(yes|\"yes\")\s+or\s+.*$", re.I),
    "zh": re.compile(r"\s*请?(回答|用)[“\"]?是[”\"]?或[“\"]?否.*$"),
}


def _yes_no_about_existence(question: str | None, answer: str, lang: str) -> bool | None:
    """True/False for a yes/no answer to an existence question, bare or followed by its
    reason; None otherwise."""
    if not question:
        return None
    question = _ANSWER_INSTRUCTION[lang].sub("", question.strip())
    claims = extract_claims(question, lang)
    if len(claims) != 1 or claims[0][0] != "exists" or not _is_existence_question(question, lang):
        return None
    head = answer.strip().lower()
    opens_with_verdict = _VERDICT_HEAD[lang].match(head) is not None
    if (lang == "en" or extract_claims(answer, lang)) and not opens_with_verdict:
        return None
    return pope_parse(answer, lang) == "yes"


def _existence_patterns(lang: str) -> list[re.Pattern]:
    patterns = []
    for template in world_text.templates(lang, "existence"):
        literal = [re.escape(part) for part in template.split("{an_a}")]
        patterns.append(re.compile("^" + "(.+)".join(literal).replace(r"\?", r"(.*)\?") + "$"))
    return patterns


_EXISTENCE = {lang: _existence_patterns(lang) for lang in ("en", "zh")}


def _is_existence_question(question: str, lang: str) -> bool:
    text = question.strip().removeprefix("<image>").strip()
    # POPE's "Is there a red star in the image?" fits "Is there {an_a}?" as well.
    return any(
        pattern.match(text) or pattern.match(text.lower().capitalize())
        for pattern in _EXISTENCE[lang]
    )


def verification_question(claim: Claim, lang: str) -> str | None:
    """The question that checks `claim`, phrased with the world's first template."""
    kind = claim[0]
    if kind == "background":
        return None
    if kind == "count":
        return _template(lang, "count", a_pl="objects" if lang == "en" else "物体")
    ref = Ref(claim[1], claim[2])
    module = world_text.language(lang)
    slots = {"a": module.referent(ref), "an_a": module.indefinite(ref)}
    family = {"exists": "existence", "size": "attribute_size", "label": "ocr"}.get(kind)
    if family is None:
        return None
    return _template(lang, family, **slots)


def _template(lang: str, family: str, **slots: str) -> str | None:
    try:
        return world_text.templates(lang, family)[0].format(**slots)
    except (KeyError, IndexError):
        return None


def _vqa_agrees(claim: Claim, reply: str, lang: str) -> bool | None:
    kind = claim[0]
    if kind == "exists":
        return pope_parse(reply, lang) == "yes"
    if kind == "count":
        number = re.search(r"\d+", reply)
        return None if number is None else int(number.group()) == claim[1]
    if kind == "size":
        said = [c for c in extract_claims(f"{reply} {claim[2]}", lang) if c[0] == "size"]
        return None if not said else said[0][3] == claim[3]
    if kind == "label":
        return claim[3].lower() in reply.lower()
    return None


def _sentences(text: str, lang: str) -> list[str]:
    """The text cut after each sentence end, keeping the punctuation and spaces."""
    ends = r"(?<=[.!?;])\s+" if lang == "en" else r"(?<=[。！？；.!?])"
    return [piece for piece in re.split(ends, text) if piece]


def _rewrite(
    sentences: list[str], checks: list[ClaimCheck], scene: Scene, lang: str, evidence: bool
) -> tuple[str, list[str], list[SceneObject]]:
    supported = {c.claim[1:3] for c in checks if c.claim[0] == "exists" and c.verdict}
    used = {(o.color, o.shape) for o in scene.objects if (o.color, o.shape) in supported}
    out, changes, kept = [], [], []
    for index, sentence in enumerate(sentences):
        mine = [c for c in checks if c.sentence == index]
        subjects = [
            _find(scene, c.claim[1], c.claim[2], mine) for c in mine if c.claim[0] == "exists"
        ]
        if all(c.verdict is not False for c in mine):
            objects = [o for o in subjects if o is not None]
            kept += objects
            out.append(_with_boxes(sentence, objects, lang) if evidence else sentence)
            continue
        replacement, objects = _replacement(sentence, mine, scene, used, lang)
        kept += objects
        if replacement is None:
            changes.append(f"dropped {sentence.strip()!r}")
            continue
        changes.append(f"{sentence.strip()!r} -> {replacement!r}")
        out.append(
            (_with_boxes(replacement, objects, lang) if evidence else replacement)
            + (" " if lang == "en" else "")
        )
    joined = "".join(part if lang == "zh" else part.strip() + " " for part in out).strip()
    return joined, changes, _unique(kept)


def _find(
    scene: Scene, color: str | None, shape: str | None, checks: list[ClaimCheck]
) -> SceneObject | None:
    """The detected object a (colour, shape) phrase means, preferring one whose size and
    position agree with what the sentence claims about it."""
    matching = [
        o
        for o in scene.objects
        if (color is None or o.color == color) and (shape is None or o.shape == shape)
    ]
    if not matching:
        return None

    def agreement(obj: SceneObject) -> int:
        mini = Scene(scene.id, scene.width, scene.height, scene.background, 0, [obj])
        return sum(
            is_faithful(c.claim, mini)
            for c in checks
            if c.claim[0] in ("size", "position") and c.claim[1:3] == (color, shape)
        )

    return max(matching, key=agreement)


def _replacement(
    sentence: str, checks: list[ClaimCheck], scene: Scene, used: set, lang: str
) -> tuple[str | None, list[SceneObject]]:
    """A faithful sentence for what `sentence` meant, from the detected scene."""
    exists = [c for c in checks if c.claim[0] == "exists"]
    if not exists:
        if any(c.claim[0] in ("count", "background") for c in checks):
            return _caption_sentences(scene, lang)[0], []
        return None, []
    objects = []
    for check in exists:
        color, shape = check.claim[1], check.claim[2]
        obj = _find(scene, color, shape, checks) if check.verdict is not False else None
        if obj is None and check.verdict is False:
            # The object it most likely meant, unmentioned: same shape, else same colour,
            # else one where the sentence puts it.
            free = [o for o in scene.objects if (o.color, o.shape) not in used]
            cells = {c.claim[3] for c in checks if c.claim[0] == "position"}
            obj = (
                next((o for o in free if o.shape == shape), None)
                or next((o for o in free if color is not None and o.color == color), None)
                or next((o for o in free if position_key(o, scene) in cells), None)
            )
        if obj is not None:
            used.add((obj.color, obj.shape))
            objects.append(obj)
    if not objects:
        return None, []
    if len(exists) == 1:
        return _object_sentence(scene, objects[0], lang), objects
    module = world_text.language(lang)
    items = [module.indefinite(Ref(o.color, o.shape)) for o in objects]
    listed = (
        items[0]
        if len(items) == 1
        else ", ".join(items[:-1]) + (" and " if lang == "en" else "和") + items[-1]
    )
    return (f"The image has {listed}." if lang == "en" else f"图中有{listed}。"), objects


def _caption_sentences(scene: Scene, lang: str) -> list[str]:
    caption = world_text.detailed_caption(scene, lang)
    return _sentences(caption, lang)


def _object_sentence(scene: Scene, obj: SceneObject, lang: str) -> str:
    """The world's caption sentence about `obj`, as the world would write it."""
    alone = Scene(scene.id, scene.width, scene.height, scene.background, 0, [obj])
    return _caption_sentences(alone, lang)[1].strip()


def _with_boxes(sentence: str, objects: list[SceneObject], lang: str) -> str:
    """The box of each object after the word naming its shape (or the sentence's end)."""
    if not objects:
        return sentence
    remaining = list(objects)
    pieces, last = [], 0
    for _start, end, shape in _shape_mentions(sentence, lang):
        obj = next((o for o in remaining if o.shape == shape), None)
        if obj is None:
            continue
        remaining.remove(obj)
        pieces += [sentence[last:end], " " + _box(obj) if lang == "en" else _box(obj)]
        last = end
    pieces.append(sentence[last:])
    text = "".join(pieces)
    if remaining:
        tail = " ".join(_box(o) for o in remaining)
        stripped = text.rstrip()
        end = stripped[-1] if stripped and stripped[-1] in ".。!?！？" else ""
        text = stripped[: len(stripped) - len(end)] + " " + tail + end + text[len(stripped) :]
    return text


def _box(obj: SceneObject) -> str:
    return "[" + ",".join(str(v) for v in obj.bbox) + "]"


def _shape_mentions(sentence: str, lang: str) -> list[tuple[int, int, str]]:
    """(start, end, shape) of each shape word, the way CHAIR finds mentions."""
    if lang == "en":
        return [
            (m.start(), m.end(), ENGLISH_OBJECT_WORDS[m.group().lower()])
            for m in re.finditer(r"[A-Za-z]+", sentence)
            if m.group().lower() in ENGLISH_OBJECT_WORDS
        ]
    longest = max(len(word) for word in CHINESE_OBJECT_WORDS)
    found, index = [], 0
    while index < len(sentence):
        for length in range(min(longest, len(sentence) - index), 0, -1):
            word = sentence[index : index + length]
            if word in CHINESE_OBJECT_WORDS:
                found.append((index, index + length, CHINESE_OBJECT_WORDS[word]))
                index += length
                break
        else:
            index += 1
    return found


def _unique(objects: list[SceneObject]) -> list[SceneObject]:
    return list({id(o): o for o in objects}.values())


__all__ = ["ClaimCheck", "Correction", "Corrector", "detect_lang", "verification_question"]
