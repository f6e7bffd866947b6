"""English: question templates, phrases, answers and captions.

Every template family has at least five phrasings; the last one of each is held out of
training (see ocelli.world.text) to test robustness to unseen paraphrases. Slots:
{a}/{b} name an object ("red circle"), {an_a} with its article, {a_pl}/{b_pl} the plural
("red circles"); {rel}, {cmp}, {attr}, {ext} come from WORDS.
"""

from __future__ import annotations

from ocelli.world.scenes import Scene
from ocelli.world.spec import Answer, Ref, position_key, reading_order
from ocelli.world.vocab import NO, SHAPE_PLURALS, SIDES, YES

TEMPLATES: dict[str, list[str]] = {
    "existence": [
        "Is there {an_a}?",
        "Does the image contain {an_a}?",
        "Can you see {an_a} in the picture?",
        "Is {an_a} present in the image?",
        "Do you see {an_a} anywhere?",
        "Looking at the scene, would you find {an_a} in it?",
    ],
    "attribute_color": [
        "What color is the {a}?",
        "What is the color of the {a}?",
        "Which color does the {a} have?",
        "Tell me the color of the {a}.",
        "The {a} is painted in which color?",
    ],
    "attribute_shape": [
        "What shape is the {a}?",
        "What is the shape of the {a}?",
        "Which shape does the {a} have?",
        "Name the shape of the {a}.",
        "The {a} has what kind of shape?",
    ],
    "attribute_size": [
        "What size is the {a}?",
        "How big is the {a}?",
        "Is the {a} small, medium or large?",
        "What is the size of the {a}?",
        "Describe the size of the {a} in one word.",
    ],
    "count": [
        "How many {a_pl} are there?",
        "How many {a_pl} are in the image?",
        "Count the {a_pl}.",
        "What is the number of {a_pl}?",
        "How many {a_pl} can you see?",
        "Give the total number of {a_pl} shown.",
    ],
    "spatial": [
        "Is the {a} {rel} the {b}?",
        "Is the {a} located {rel} the {b}?",
        "Does the {a} appear {rel} the {b}?",
        "Would you say the {a} is {rel} the {b}?",
        "Checking their positions, is the {a} {rel} the {b}?",
    ],
    "comparison_size": [
        "Is the {a} {cmp} than the {b}?",
        "Is the {a} {cmp} in size than the {b}?",
        "Compared with the {b}, is the {a} {cmp}?",
        "Does the {a} look {cmp} than the {b}?",
        "Would you say the {a} is {cmp} than the {b}?",
    ],
    "comparison_same": [
        "Do the {a} and the {b} have the same {attr}?",
        "Is the {a} the same {attr} as the {b}?",
        "Are the {a} and the {b} the same {attr}?",
        "Does the {a} share its {attr} with the {b}?",
        "Do the {a} and the {b} match in {attr}?",
    ],
    "extreme": [
        "What is the {attr} of the {ext} object?",
        "What {attr} is the {ext} object?",
        "Tell me the {attr} of the {ext} object.",
        "Which {attr} does the {ext} object have?",
        "Identify the {attr} of the {ext} object in the image.",
    ],
    "ocr": [
        "What is written on the {a}?",
        "What does the label on the {a} say?",
        "Which word is printed on the {a}?",
        "Read the text on the {a}.",
        "What text appears on the {a}?",
    ],
    "reasoning": [
        "Are there more {a_pl} than {b_pl}? Explain briefly.",
        "Do the {a_pl} outnumber the {b_pl}? Explain briefly.",
        "Is the number of {a_pl} greater than the number of {b_pl}? Give a short reason.",
        "Compare the counts: are there more {a_pl} than {b_pl}? Explain.",
        "Are {a_pl} more numerous than {b_pl}? Briefly justify your answer.",
    ],
    "soc_shape": [
        "What is the shape of the {a}?",
        "What shape is the {a}?",
        "Is the {a} a square or a circle?",
        "Tell me the shape of the {a}.",
        "Which shape does the {a} have?",
    ],
    "soc_horizontal": [
        "Is the {a} on the left or right of the image?",
        "Is the {a} in the left or the right half of the image?",
        "On which side of the image, left or right, is the {a}?",
        "Does the {a} lie on the left or on the right?",
        "Left or right: where is the {a}?",
    ],
    "soc_vertical": [
        "Is the {a} at the top or bottom of the image?",
        "Is the {a} in the top or the bottom half of the image?",
        "Which half of the image, top or bottom, holds the {a}?",
        "Does the {a} lie at the top or at the bottom?",
        "Top or bottom: where is the {a}?",
    ],
    "soc_closest": [
        "What is the shape of the object closest to the {a}?",
        "What shape is the object nearest to the {a}?",
        "Which shape does the object closest to the {a} have?",
        "Tell me the shape of the object that is nearest the {a}.",
        "The object closest to the {a} has what shape?",
    ],
    "soc_furthest": [
        "What is the shape of the object furthest from the {a}?",
        "What shape is the object farthest from the {a}?",
        "Which shape does the object furthest from the {a} have?",
        "Tell me the shape of the object that is farthest from the {a}.",
        "The object furthest from the {a} has what shape?",
    ],
    "soc_count_same": [
        "How many other objects have the same shape as the {a}?",
        "How many other objects share the shape of the {a}?",
        "Count the other objects with the same shape as the {a}.",
        "What is the number of other objects shaped like the {a}?",
        "How many objects besides the {a} have its shape?",
    ],
}

WORDS: dict[str, dict[str, str]] = {
    "rel": {
        "left": "to the left of",
        "right": "to the right of",
        "above": "above",
        "below": "below",
    },
    "cmp": {"larger": "larger", "smaller": "smaller"},
    "attr": {"color": "color", "shape": "shape"},
    "ext": {
        "largest": "largest",
        "smallest": "smallest",
        "leftmost": "leftmost",
        "rightmost": "rightmost",
        "topmost": "topmost",
        "bottommost": "bottommost",
    },
}

SHORT_CAPTION_PROMPTS: list[str] = [
    "Describe the image briefly.",
    "Write a short caption for this image.",
    "What does this image show? Answer in one sentence.",
    "Give a brief description of the picture.",
    "Summarize the image in a few words.",
]
DETAILED_CAPTION_PROMPTS: list[str] = [
    "Describe the image in detail.",
    "List every object in the image with its color, size, shape and position.",
    "Give a detailed description of this picture.",
]

_POSITIONS = {
    "top_left": "at the top left",
    "top": "at the top",
    "top_right": "at the top right",
    "left": "on the left",
    "center": "in the center",
    "right": "on the right",
    "bottom_left": "at the bottom left",
    "bottom": "at the bottom",
    "bottom_right": "at the bottom right",
}
_BACKGROUNDS = {"plain": "plain", "noise": "noisy", "texture": "textured"}
_SHORT_CAPTION_FORMS = ["{list}.", "An image with {list}.", "A picture showing {list}."]
NUM_SHORT_CAPTION_FORMS = len(_SHORT_CAPTION_FORMS)


def referent(ref: Ref) -> str:
    return f"{ref.color} {ref.shape or 'object'}" if ref.color else (ref.shape or "object")


def indefinite(ref: Ref) -> str:
    phrase = referent(ref)
    return f"an {phrase}" if phrase[0] in "aeiou" else f"a {phrase}"


def plural(ref: Ref) -> str:
    noun = SHAPE_PLURALS[ref.shape] if ref.shape else "objects"
    return f"{ref.color} {noun}" if ref.color else noun


def counted(count: int, ref: Ref) -> str:
    return f"{count} {referent(ref) if count == 1 else plural(ref)}"


def answer_text(answer: Answer) -> str:
    if answer.kind == "yes_no":
        return YES["en"] if answer.value else NO["en"]
    if answer.kind == "count":
        return str(answer.value)
    if answer.kind == "side":
        return SIDES["en"][answer.value]
    if answer.kind == "reasoning":
        (x_ref, x_count), (y_ref, y_count) = answer.detail
        verdict = "Yes" if answer.value else "No"
        return f"{verdict}. The image has {counted(x_count, x_ref)} and {counted(y_count, y_ref)}."
    return str(answer.value)  # colour, shape, size and label words are their own answers


def short_caption(scene: Scene, form: int) -> str:
    items = [indefinite(Ref(o.color, o.shape)) for o in reading_order(scene)]
    text = _SHORT_CAPTION_FORMS[form].format(list=_join(items))
    return text[0].upper() + text[1:]


def detailed_caption(scene: Scene) -> str:
    count = len(scene.objects)
    noun = "object" if count == 1 else "objects"
    sentences = [
        f"The image shows {count} {noun} on a {_BACKGROUNDS[scene.background]} background."
    ]
    by_id = {o.id: o for o in scene.objects}
    for obj in reading_order(scene):
        sentence = f"A {obj.size} {obj.color} {obj.shape} is {_POSITIONS[position_key(obj, scene)]}"
        if obj.occluded_by:
            hiders = [
                f"the {referent(Ref(by_id[i].color, by_id[i].shape))}" for i in obj.occluded_by
            ]
            sentence += f", partly hidden by {_join(hiders)}"
        if obj.label:
            sentence += f'; it carries the label "{obj.label}"'
        sentences.append(sentence + ".")
    return " ".join(sentences)


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
