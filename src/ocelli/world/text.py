"""Putting question specs and scenes into words, in every supported language.

Each language module (text_en, text_zh) holds its templates, phrases and caption
writers; this module picks a template and fills its slots. The last template of every
family is held out: it is not used for training data unless asked for, so evaluation
can test whether a model understands a phrasing it has never seen.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from ocelli.world import text_en, text_zh
from ocelli.world.scenes import Scene
from ocelli.world.spec import Answer, QuestionSpec, Ref

LANGUAGES: dict[str, ModuleType] = {"en": text_en, "zh": text_zh}
MIN_TEMPLATES_PER_FAMILY = 5


def language(lang: str) -> ModuleType:
    try:
        return LANGUAGES[lang]
    except KeyError:
        raise ValueError(f"unknown language {lang!r}; choose from {', '.join(LANGUAGES)}") from None


def templates(lang: str, family: str) -> list[str]:
    return language(lang).TEMPLATES[family]


def template_table() -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Every template of every family and language, with its held-out flag."""
    return {
        lang: {
            family: [
                {"index": i, "text": text, "heldout": i == len(texts) - 1}
                for i, text in enumerate(texts)
            ]
            for family, texts in module.TEMPLATES.items()
        }
        for lang, module in LANGUAGES.items()
    }


def choose_template(family: str, lang: str, rng: np.random.Generator, allow_heldout: bool) -> int:
    count = len(templates(lang, family))
    usable = count if allow_heldout else count - 1
    return int(rng.integers(usable))


def phrase_question(spec: QuestionSpec, lang: str, template_index: int) -> str:
    """The question `spec` in `lang`, worded by template `template_index` of its family."""
    module = language(lang)
    phrases: dict[str, str] = {}
    for name, value in spec.slots.items():
        if isinstance(value, Ref):
            phrases[name] = module.referent(value)
            phrases[f"an_{name}"] = module.indefinite(value)
            phrases[f"{name}_pl"] = module.plural(value)
        else:
            phrases[name] = module.WORDS[name][value]
    return module.TEMPLATES[spec.family][template_index].format(**phrases)


def answer_text(answer: Answer, lang: str) -> str:
    """The full answer; for reasoning questions the verdict and its short rationale."""
    return language(lang).answer_text(answer)


def short_answer(answer: Answer, lang: str) -> str:
    """The canonical one-word answer (a reasoning answer reduced to its yes or no)."""
    if answer.kind == "reasoning":
        answer = Answer("yes_no", answer.value)
    return language(lang).answer_text(answer)


def short_caption(scene: Scene, lang: str, rng: np.random.Generator) -> str:
    module = language(lang)
    return module.short_caption(scene, int(rng.integers(module.NUM_SHORT_CAPTION_FORMS)))


def detailed_caption(scene: Scene, lang: str) -> str:
    return language(lang).detailed_caption(scene)


def caption_prompt(lang: str, rng: np.random.Generator, detailed: bool) -> str:
    module = language(lang)
    prompts = module.DETAILED_CAPTION_PROMPTS if detailed else module.SHORT_CAPTION_PROMPTS
    return prompts[int(rng.integers(len(prompts)))]
