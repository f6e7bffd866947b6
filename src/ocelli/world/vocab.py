"""The world's vocabulary, in one place: shapes, colours, sizes and their English and
Chinese names, plural forms and synonyms.

Everything that names a thing of the world (scene generation, renderer, question
templates, evaluation's answer matching) reads it from here, so a new colour or shape is
one entry in each table below.
"""

from __future__ import annotations

from typing import Final

SHAPES: Final[tuple[str, ...]] = (
    "circle",
    "square",
    "triangle",
    "pentagon",
    "hexagon",
    "star",
    "diamond",
)

# Colours are far apart in RGB and from the light backgrounds, so every colour stays
# recognisable after antialiasing at 64 px.
COLORS: Final[dict[str, tuple[int, int, int]]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "orange": (245, 140, 30),
    "purple": (140, 60, 180),
    "cyan": (40, 200, 210),
    "gray": (128, 128, 128),
    "brown": (130, 80, 40),
    "pink": (245, 130, 190),
}

# Nominal object radius as a fraction of the image side. Each shape is scaled so that
# all shapes of one size class cover about the same area (see geometry.SHAPE_SCALE):
# "larger" then means the same thing for a triangle as for a circle.
SIZES: Final[dict[str, float]] = {"small": 0.085, "medium": 0.125, "large": 0.17}
SIZE_RANK: Final[dict[str, int]] = {"small": 0, "medium": 1, "large": 2}

SHAPE_PLURALS: Final[dict[str, str]] = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "pentagon": "pentagons",
    "hexagon": "hexagons",
    "star": "stars",
    "diamond": "diamonds",
}

SHAPES_ZH: Final[dict[str, str]] = {
    "circle": "圆形",
    "square": "正方形",
    "triangle": "三角形",
    "pentagon": "五边形",
    "hexagon": "六边形",
    "star": "星形",
    "diamond": "菱形",
}

COLORS_ZH: Final[dict[str, str]] = {
    "red": "红色",
    "green": "绿色",
    "blue": "蓝色",
    "yellow": "黄色",
    "orange": "橙色",
    "purple": "紫色",
    "cyan": "青色",
    "gray": "灰色",
    "brown": "棕色",
    "pink": "粉色",
}

SIZES_ZH: Final[dict[str, str]] = {"small": "小", "medium": "中", "large": "大"}

# Canonical short answers. Counts are written as decimal digits in both languages.
YES: Final[dict[str, str]] = {"en": "yes", "zh": "是"}
NO: Final[dict[str, str]] = {"en": "no", "zh": "否"}
SIDES: Final[dict[str, dict[str, str]]] = {
    "en": {"left": "left", "right": "right", "top": "top", "bottom": "bottom"},
    "zh": {"left": "左", "right": "右", "top": "上", "bottom": "下"},
}

# Other words a person (or a model) may use for a canonical answer; evaluation accepts
# them as equivalent. Keys are canonical English answers.
SYNONYMS_EN: Final[dict[str, tuple[str, ...]]] = {
    "gray": ("grey",),
    "purple": ("violet",),
    "cyan": ("turquoise", "aqua"),
    "circle": ("disc", "disk", "round"),
    "square": ("box",),
    "diamond": ("rhombus", "lozenge"),
    "star": ("five-pointed star",),
    "medium": ("middle", "mid-sized", "medium-sized"),
    "large": ("big",),
    "small": ("little", "tiny"),
    "top": ("up", "upper"),
    "bottom": ("down", "lower"),
}
SYNONYMS_ZH: Final[dict[str, tuple[str, ...]]] = {
    "圆形": ("圆",),
    "正方形": ("方形", "方块"),
    "三角形": ("三角",),
    "五边形": ("五角形",),
    "六边形": ("六角形",),
    "星形": ("星星", "五角星"),
    "菱形": ("菱",),
    "灰色": ("灰",),
    "红色": ("红",),
    "绿色": ("绿",),
    "蓝色": ("蓝",),
    "黄色": ("黄",),
    "橙色": ("橙",),
    "紫色": ("紫",),
    "青色": ("青",),
    "棕色": ("棕", "褐色"),
    "粉色": ("粉红色", "粉红"),
    "是": ("是的", "对"),
    "否": ("不是", "不", "没有"),
    "左": ("左边", "左侧"),
    "右": ("右边", "右侧"),
    "上": ("上方", "上面"),
    "下": ("下方", "下面"),
    "中": ("中等",),
}

# Short words and digits printed on objects when text labels are enabled. None of them
# is a colour or shape word, so a label never answers a different question by accident.
LABEL_WORDS: Final[tuple[str, ...]] = (
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    "cat",
    "dog",
    "sun",
    "car",
    "cup",
    "hat",
    "pen",
    "key",
    "map",
    "fox",
    "AB",
    "OK",
    "GO",
    "HI",
    "XY",
)

# A row per word: what other modules need to translate or match answers.
VOCAB: Final[list[dict[str, str]]] = (
    [{"kind": "shape", "en": s, "en_plural": SHAPE_PLURALS[s], "zh": SHAPES_ZH[s]} for s in SHAPES]
    + [{"kind": "color", "en": c, "en_plural": c, "zh": COLORS_ZH[c]} for c in COLORS]
    + [{"kind": "size", "en": s, "en_plural": s, "zh": SIZES_ZH[s]} for s in SIZES]
)


def translate(word: str, lang: str) -> str:
    """The name of a shape, colour, size or yes/no answer in `lang` ("en" or "zh")."""
    if lang == "en":
        return word
    for table in (SHAPES_ZH, COLORS_ZH, SIZES_ZH, SIDES["zh"]):
        if word in table:
            return table[word]
    if word in ("yes", "no"):
        return YES["zh"] if word == "yes" else NO["zh"]
    return word


def answer_synonyms(answer: str, lang: str) -> tuple[str, ...]:
    """Every accepted spelling of a canonical answer, the canonical one first."""
    table = SYNONYMS_ZH if lang == "zh" else SYNONYMS_EN
    return (answer, *table.get(answer, ()))
