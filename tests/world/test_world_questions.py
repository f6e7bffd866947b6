"""Questions: every answer re-derived from the scene graph by code that only reads the
English question text, plus template coverage, held-out templates and yes/no balance."""

from __future__ import annotations

import math
import re
import string

import pytest

from ocelli.world import (
    COLORS,
    SHAPE_PLURALS,
    SHAPES,
    TYPE_FAMILIES,
    WorldConfig,
    generate_scenes,
    questions_for_scene,
    template_table,
    translate,
)
from ocelli.world.config import QUESTION_TYPES, SORT_OF_CLEVR_TYPES

COLOR = "|".join(COLORS)
NOUN = "|".join(list(SHAPES) + list(SHAPE_PLURALS.values()) + ["objects", "object"])
REFERENT = re.compile(rf"\b(?:({COLOR}) )?({NOUN})\b")
SINGULAR = {plural: shape for shape, plural in SHAPE_PLURALS.items()}
RANK = {"small": 0, "medium": 1, "large": 2}

CHECKED_WORLD = WorldConfig(
    image_size=80,
    min_objects=2,
    max_objects=6,
    text_labels=0.7,
    rotation=True,
    occlusion=True,
    questions_per_image=12,
    langs=["en"],
)


def referents(question: str) -> list[tuple[str | None, str | None]]:
    """(colour, shape) of every object phrase in an English question, in order."""
    found = []
    for color, noun in REFERENT.findall(question):
        shape = SINGULAR.get(noun, noun)
        found.append((color or None, None if shape in ("object", "objects") else shape))
    return found


def matching(scene, color, shape):
    return [
        o
        for o in scene.objects
        if (color is None or o.color == color) and (shape is None or o.shape == shape)
    ]


def the(scene, ref):
    objects = matching(scene, *ref)
    assert len(objects) == 1, f"{ref} does not name exactly one object"
    return objects[0]


TEMPLATES = template_table()


def expected_answer(scene, item) -> str:
    question, subtype = item["question"], item["subtype"]
    refs = referents(question)
    family, index = item["template"].split("/")
    template = TEMPLATES["en"][family][int(index)]["text"]
    if "{b" in template and template.index("{b") < template.index("{a"):
        refs = refs[::-1]  # this phrasing names the second object first
    yes_no = {True: "yes", False: "no"}
    kind = item["type"]
    if kind == "existence":
        return yes_no[bool(matching(scene, *refs[0]))]
    if kind == "count":
        return str(len(matching(scene, *refs[0]))) if refs else str(len(scene.objects))
    if kind == "attribute":
        return getattr(the(scene, refs[0]), subtype)
    if kind == "ocr":
        return the(scene, refs[0]).label
    if kind in ("spatial", "comparison"):
        a, b = the(scene, refs[0]), the(scene, refs[1])
        truth = {
            "left": a.center[0] < b.center[0],
            "right": a.center[0] > b.center[0],
            "above": a.center[1] < b.center[1],
            "below": a.center[1] > b.center[1],
            "larger": RANK[a.size] > RANK[b.size],
            "smaller": RANK[a.size] < RANK[b.size],
            "same_color": a.color == b.color,
            "same_shape": a.shape == b.shape,
        }[subtype]
        return yes_no[truth]
    if kind == "extreme":
        extreme, attribute = subtype.split("_")
        key = {
            "largest": lambda o: -RANK[o.size],
            "smallest": lambda o: RANK[o.size],
            "leftmost": lambda o: o.center[0],
            "rightmost": lambda o: -o.center[0],
            "topmost": lambda o: o.center[1],
            "bottommost": lambda o: -o.center[1],
        }[extreme]
        ranked = sorted(scene.objects, key=key)
        assert key(ranked[0]) < key(ranked[1]), "extreme object is not unique"
        return getattr(ranked[0], attribute)
    if kind == "reasoning":
        x, y = len(matching(scene, *refs[0])), len(matching(scene, *refs[1]))
        return yes_no[x > y]
    raise AssertionError(f"unchecked type {kind}")


def test_every_answer_matches_the_scene_graph():
    scenes = generate_scenes(60, seed=11, config=CHECKED_WORLD)
    seen_types = set()
    for index, scene in enumerate(scenes):
        for item in questions_for_scene(scene, CHECKED_WORLD, seed=index):
            seen_types.add(item["type"])
            got = item["short_answer"] if item["type"] == "reasoning" else item["answer"]
            assert got == expected_answer(scene, item), item
    assert seen_types == set(QUESTION_TYPES)


def test_reasoning_rationale_states_the_counts():
    scenes = generate_scenes(30, seed=2, config=CHECKED_WORLD)
    config = WorldConfig(question_types=["reasoning"], questions_per_image=2, langs=["en", "zh"])
    for index, scene in enumerate(scenes):
        for item in questions_for_scene(scene, config, seed=index):
            numbers = [int(n) for n in re.findall(r"\d+", item["answer"])]
            assert len(numbers) == 2
            verdict = {"en": {"yes": "Yes.", "no": "No."}, "zh": {"是": "是。", "否": "否。"}}
            assert item["answer"].startswith(verdict[item["lang"]][item["short_answer"]])
            assert (numbers[0] > numbers[1]) == (item["short_answer"] in ("yes", "是"))


def test_sort_of_clevr_questions():
    config = WorldConfig(mode="sort-of-clevr", langs=["en", "zh"])
    for index, scene in enumerate(generate_scenes(10, seed=4, config=config)):
        items = questions_for_scene(scene, config, seed=index)
        for lang in ("en", "zh"):
            kinds = [i["type"] for i in items if i["lang"] == lang]
            assert kinds.count("non-relational") == 10 and kinds.count("relational") == 10
        for item in (i for i in items if i["lang"] == "en"):
            target = the(scene, next(r for r in referents(item["question"]) if r[0]))
            others = [o for o in scene.objects if o is not target]
            distance = {o.id: math.dist(o.center, target.center) for o in others}
            expected = {
                "shape": target.shape,
                "horizontal": "left" if target.center[0] + 0.5 < 37.5 else "right",
                "vertical": "top" if target.center[1] + 0.5 < 37.5 else "bottom",
                "closest_shape": min(others, key=lambda o: distance[o.id]).shape,
                "furthest_shape": max(others, key=lambda o: distance[o.id]).shape,
                "count_same_shape": str(sum(o.shape == target.shape for o in others)),
            }[item["subtype"]]
            assert item["answer"] == expected, item


def test_at_least_five_templates_per_type_and_language():
    table = template_table()
    for lang in ("en", "zh"):
        for qtype in QUESTION_TYPES + SORT_OF_CLEVR_TYPES:
            for family in TYPE_FAMILIES[qtype]:
                templates = table[lang][family]
                assert len(templates) >= 5, (lang, family)
                assert [t["heldout"] for t in templates].count(True) == 1
                assert templates[-1]["heldout"]
                assert len({t["text"] for t in templates}) == len(templates)


def test_templates_fill_every_slot():
    config = WorldConfig(text_labels=0.8, langs=["en", "zh"], questions_per_image=30)
    for index, scene in enumerate(generate_scenes(10, seed=0, config=config)):
        for item in questions_for_scene(scene, config, seed=index):
            assert not set("{}") & set(item["question"]), item
            assert item["answer"] and item["answer"].strip() == item["answer"]


def test_heldout_templates_only_when_allowed():
    config = WorldConfig(langs=["en", "zh"], questions_per_image=12)
    scenes = generate_scenes(40, seed=1, config=config)
    train = [
        q
        for i, s in enumerate(scenes)
        for q in questions_for_scene(s, config, seed=i, allow_heldout=False)
    ]
    assert not any(q["heldout"] for q in train)
    evaluation = [q for i, s in enumerate(scenes) for q in questions_for_scene(s, config, seed=i)]
    assert any(q["heldout"] for q in evaluation)


def test_existence_is_balanced():
    config = WorldConfig(question_types=["existence"], questions_per_image=1)
    scenes = generate_scenes(400, seed=8, config=config)
    answers = [questions_for_scene(s, config, seed=i)[0]["answer"] for i, s in enumerate(scenes)]
    assert 0.42 <= answers.count("yes") / len(answers) <= 0.58


@pytest.mark.parametrize("lang, yes, no", [("en", "yes", "no"), ("zh", "是", "否")])
def test_canonical_answers(lang, yes, no):
    config = WorldConfig(langs=[lang], questions_per_image=10)
    words = {
        "zh": "红色 绿色 蓝色 黄色 橙色 紫色 青色 灰色 棕色 粉色 圆形 正方形 三角形 五边形 "
        "六边形 星形 菱形 小 中 大",
        "en": " ".join([*COLORS, *SHAPES, "small medium large"]),
    }
    allowed = set(words[lang].split()) | {yes, no}
    for index, scene in enumerate(generate_scenes(20, seed=3, config=config)):
        for item in questions_for_scene(scene, config, seed=index):
            answer = item["short_answer"]
            assert answer in allowed or answer.isdigit(), item
            assert not any(c in string.whitespace for c in answer)


def test_chinese_answers_translate_the_english_ones():
    config = WorldConfig(langs=["en", "zh"], questions_per_image=10, text_labels=0.5)
    for index, scene in enumerate(generate_scenes(20, seed=12, config=config)):
        items = questions_for_scene(scene, config, seed=index)
        english = [i for i in items if i["lang"] == "en"]
        chinese = [i for i in items if i["lang"] == "zh"]
        assert len(english) == len(chinese)
        for en, zh in zip(english, chinese, strict=True):
            assert (en["type"], en["subtype"]) == (zh["type"], zh["subtype"])
            assert translate(en["short_answer"], "zh") == zh["short_answer"]
