"""Chinese: question templates, phrases, answers and captions.

Same template families and slots as ocelli.world.text_en; the last template of each
family is the held-out paraphrase. Chinese has no articles or plurals, so {an_a} is
"一个" + the name and {a_pl} is the name itself.
"""

from __future__ import annotations

from ocelli.world.scenes import Scene
from ocelli.world.spec import Answer, Ref, position_key, reading_order
from ocelli.world.vocab import COLORS_ZH, NO, SHAPES_ZH, SIDES, SIZES_ZH, YES

TEMPLATES: dict[str, list[str]] = {
    "existence": [
        "图中有{an_a}吗？",
        "这张图片里有没有{an_a}？",
        "你能在图中看到{an_a}吗？",
        "图片中是否存在{an_a}？",
        "画面里能找到{an_a}吗？",
        "仔细看这个场景，里面有{an_a}吗？",
    ],
    "attribute_color": [
        "{a}是什么颜色？",
        "{a}的颜色是什么？",
        "图中的{a}是什么颜色的？",
        "请说出{a}的颜色。",
        "{a}被涂成了哪种颜色？",
    ],
    "attribute_shape": [
        "{a}是什么形状？",
        "{a}的形状是什么？",
        "图中的{a}是什么形状的？",
        "请说出{a}的形状。",
        "{a}属于哪一种形状？",
    ],
    "attribute_size": [
        "{a}有多大？",
        "{a}的大小是怎样的？",
        "{a}是小、中还是大？",
        "请说出{a}的尺寸。",
        "用一个字描述{a}的大小。",
    ],
    "count": [
        "图中有几个{a_pl}？",
        "图片里有多少个{a_pl}？",
        "数一数{a_pl}有几个。",
        "{a_pl}的数量是多少？",
        "你能看到几个{a_pl}？",
        "画面中一共出现了多少个{a_pl}？",
    ],
    "spatial": [
        "{a}在{b}的{rel}吗？",
        "{a}是否位于{b}的{rel}？",
        "{a}是不是在{b}的{rel}？",
        "从图中看，{a}在{b}的{rel}吗？",
        "请判断：{a}位于{b}的{rel}吗？",
    ],
    "comparison_size": [
        "{a}比{b}{cmp}吗？",
        "{a}是否比{b}{cmp}？",
        "和{b}相比，{a}更{cmp}吗？",
        "{a}的尺寸比{b}{cmp}吗？",
        "请判断{a}是不是比{b}{cmp}。",
    ],
    "comparison_same": [
        "{a}和{b}的{attr}相同吗？",
        "{a}与{b}是同一种{attr}吗？",
        "{a}和{b}的{attr}一样吗？",
        "{a}的{attr}跟{b}相同吗？",
        "请判断{a}和{b}的{attr}是否一致。",
    ],
    "extreme": [
        "{ext}的物体是什么{attr}？",
        "{ext}的那个物体是什么{attr}？",
        "请说出{ext}的物体的{attr}。",
        "{ext}的物体的{attr}是什么？",
        "图中{ext}的物体有着什么{attr}？",
    ],
    "ocr": [
        "{a}上写着什么？",
        "{a}上的标签是什么？",
        "{a}上印着什么字？",
        "读出{a}上的文字。",
        "{a}上显示的文字是什么？",
    ],
    "reasoning": [
        "{a_pl}比{b_pl}多吗？请简要说明。",
        "{a_pl}的数量比{b_pl}多吗？请简单解释。",
        "图中{a_pl}是否多于{b_pl}？简要说明理由。",
        "比较一下，{a_pl}比{b_pl}多吗？请解释。",
        "{a_pl}的个数超过{b_pl}了吗？请简述原因。",
    ],
    "soc_shape": [
        "{a}是什么形状？",
        "{a}的形状是什么？",
        "{a}是正方形还是圆形？",
        "请说出{a}的形状。",
        "{a}属于哪种形状？",
    ],
    "soc_horizontal": [
        "{a}在图像的左边还是右边？",
        "{a}位于图像的左半部分还是右半部分？",
        "{a}在左侧还是右侧？",
        "请判断{a}在左边还是右边。",
        "左还是右：{a}在哪一边？",
    ],
    "soc_vertical": [
        "{a}在图像的上方还是下方？",
        "{a}位于图像的上半部分还是下半部分？",
        "{a}在上面还是下面？",
        "请判断{a}在上方还是下方。",
        "上还是下：{a}在哪一半？",
    ],
    "soc_closest": [
        "离{a}最近的物体是什么形状？",
        "距离{a}最近的物体的形状是什么？",
        "最靠近{a}的物体是什么形状？",
        "请说出离{a}最近的物体的形状。",
        "与{a}相距最近的那个物体是什么形状？",
    ],
    "soc_furthest": [
        "离{a}最远的物体是什么形状？",
        "距离{a}最远的物体的形状是什么？",
        "最远离{a}的物体是什么形状？",
        "请说出离{a}最远的物体的形状。",
        "与{a}相距最远的那个物体是什么形状？",
    ],
    "soc_count_same": [
        "有几个其他物体和{a}形状相同？",
        "和{a}形状一样的其他物体有多少个？",
        "数一数与{a}形状相同的其他物体有几个。",
        "除了{a}，还有多少个物体是同样的形状？",
        "与{a}同形状的其他物体共有几个？",
    ],
}

WORDS: dict[str, dict[str, str]] = {
    "rel": {"left": "左边", "right": "右边", "above": "上方", "below": "下方"},
    "cmp": {"larger": "大", "smaller": "小"},
    "attr": {"color": "颜色", "shape": "形状"},
    "ext": {
        "largest": "最大",
        "smallest": "最小",
        "leftmost": "最左边",
        "rightmost": "最右边",
        "topmost": "最上面",
        "bottommost": "最下面",
    },
}

SHORT_CAPTION_PROMPTS: list[str] = [
    "简要描述这张图片。",
    "为这张图片写一句简短的说明。",
    "这张图片展示了什么？请用一句话回答。",
    "简单描述一下这幅图。",
    "用几个词概括这张图片。",
]
DETAILED_CAPTION_PROMPTS: list[str] = [
    "详细描述这张图片。",
    "列出图中每个物体的颜色、大小、形状和位置。",
    "请对这张图片做详细的描述。",
]

_POSITIONS = {
    "top_left": "左上方",
    "top": "上方",
    "top_right": "右上方",
    "left": "左侧",
    "center": "中间",
    "right": "右侧",
    "bottom_left": "左下方",
    "bottom": "下方",
    "bottom_right": "右下方",
}
_SIZE_ADJECTIVES = {"small": "小的", "medium": "中等大小的", "large": "大的"}
_BACKGROUNDS = {"plain": "纯色的", "noise": "带噪点的", "texture": "带纹理的"}
_SHORT_CAPTION_FORMS = ["{list}。", "图中有{list}。", "一张包含{list}的图片。"]
NUM_SHORT_CAPTION_FORMS = len(_SHORT_CAPTION_FORMS)


def referent(ref: Ref) -> str:
    color = COLORS_ZH[ref.color] if ref.color else ""
    if ref.shape:
        return color + SHAPES_ZH[ref.shape]
    return color + "物体"


def indefinite(ref: Ref) -> str:
    return "一个" + referent(ref)


def plural(ref: Ref) -> str:
    return referent(ref)


def counted(count: int, ref: Ref) -> str:
    return f"{count}个{referent(ref)}"


def answer_text(answer: Answer) -> str:
    if answer.kind == "yes_no":
        return YES["zh"] if answer.value else NO["zh"]
    if answer.kind == "count":
        return str(answer.value)
    if answer.kind == "color":
        return COLORS_ZH[answer.value]
    if answer.kind == "shape":
        return SHAPES_ZH[answer.value]
    if answer.kind == "size":
        return SIZES_ZH[answer.value]
    if answer.kind == "side":
        return SIDES["zh"][answer.value]
    if answer.kind == "reasoning":
        (x_ref, x_count), (y_ref, y_count) = answer.detail
        verdict = YES["zh"] if answer.value else NO["zh"]
        return f"{verdict}。图中有{counted(x_count, x_ref)}和{counted(y_count, y_ref)}。"
    return str(answer.value)  # labels are written in Latin letters and digits


def short_caption(scene: Scene, form: int) -> str:
    items = [indefinite(Ref(o.color, o.shape)) for o in reading_order(scene)]
    return _SHORT_CAPTION_FORMS[form].format(list=_join(items))


def detailed_caption(scene: Scene) -> str:
    background = _BACKGROUNDS[scene.background]
    sentences = [f"图中有{len(scene.objects)}个物体，背景是{background}。"]
    by_id = {o.id: o for o in scene.objects}
    for obj in reading_order(scene):
        name = _SIZE_ADJECTIVES[obj.size] + referent(Ref(obj.color, obj.shape))
        sentence = f"{_POSITIONS[position_key(obj, scene)]}有一个{name}"
        if obj.occluded_by:
            hiders = [referent(Ref(by_id[i].color, by_id[i].shape)) for i in obj.occluded_by]
            sentence += f"，被{_join(hiders)}部分遮挡"
        if obj.label:
            sentence += f"，上面写着“{obj.label}”"
        sentences.append(sentence + "。")
    return "".join(sentences)


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return "、".join(items[:-1]) + "和" + items[-1]
