"""Sort-of-CLEVR (Santoro et al. 2017, "A simple neural network module for relational
reasoning").

Layout (see config.SORT_OF_CLEVR_LAYOUT): 75x75 images with six objects, one per colour
(red, blue, green, orange, yellow, gray), each a square or a circle, never overlapping.
Every image gets ten non-relational and ten relational questions, each about the object
of one colour:

- non-relational/shape: the shape of the <colour> object;
- non-relational/horizontal: is it on the left or the right of the image;
- non-relational/vertical: is it at the top or the bottom of the image;
- relational/closest_shape: the shape of the object closest to it;
- relational/furthest_shape: the shape of the object furthest from it;
- relational/count_same_shape: how many other objects have its shape.

Questions are drawn without repetition from the 18 (colour, subtype) pairs of each
kind; pairs whose answer would be a tie (an object exactly on the middle line, two
nearest objects at equal distance with different shapes) are never asked.
"""

from __future__ import annotations

import numpy as np

from ocelli.world.scenes import Scene, SceneObject
from ocelli.world.spec import Answer, QuestionSpec, Ref

NON_RELATIONAL: tuple[str, ...] = ("shape", "horizontal", "vertical")
RELATIONAL: tuple[str, ...] = ("closest_shape", "furthest_shape", "count_same_shape")
QUESTIONS_PER_KIND = 10

_FAMILIES = {
    "shape": "soc_shape",
    "horizontal": "soc_horizontal",
    "vertical": "soc_vertical",
    "closest_shape": "soc_closest",
    "furthest_shape": "soc_furthest",
    "count_same_shape": "soc_count_same",
}


def sort_of_clevr_questions(scene: Scene, rng: np.random.Generator) -> list[QuestionSpec]:
    """Ten non-relational then ten relational questions about `scene`."""
    objects = sorted(scene.objects, key=lambda o: o.id)
    chosen = []
    for kind, subtypes in (("non-relational", NON_RELATIONAL), ("relational", RELATIONAL)):
        candidates = [
            spec
            for obj in objects
            for subtype in subtypes
            if (spec := _question(kind, subtype, obj, objects, scene)) is not None
        ]
        order = rng.permutation(len(candidates))[:QUESTIONS_PER_KIND]
        chosen.extend(candidates[int(i)] for i in order)
    return chosen


def _question(
    kind: str, subtype: str, obj: SceneObject, objects: list[SceneObject], scene: Scene
) -> QuestionSpec | None:
    answer = _answer(subtype, obj, objects, scene)
    if answer is None:
        return None
    return QuestionSpec(kind, subtype, _FAMILIES[subtype], {"a": Ref(color=obj.color)}, answer)


def _answer(
    subtype: str, obj: SceneObject, objects: list[SceneObject], scene: Scene
) -> Answer | None:
    # Centres are pixel indices; the continuous centre of pixel x is x + 0.5.
    if subtype == "shape":
        return Answer("shape", obj.shape)
    if subtype == "horizontal":
        offset = obj.center[0] + 0.5 - scene.width / 2
        return None if offset == 0 else Answer("side", "left" if offset < 0 else "right")
    if subtype == "vertical":
        offset = obj.center[1] + 0.5 - scene.height / 2
        return None if offset == 0 else Answer("side", "top" if offset < 0 else "bottom")
    others = [o for o in objects if o.id != obj.id]
    if subtype == "count_same_shape":
        return Answer("count", sum(o.shape == obj.shape for o in others))
    distances = [
        ((o.center[0] - obj.center[0]) ** 2 + (o.center[1] - obj.center[1]) ** 2, o.shape)
        for o in others
    ]
    best = (
        min(d for d, _ in distances) if subtype == "closest_shape" else max(d for d, _ in distances)
    )
    shapes = sorted({shape for d, shape in distances if d == best})
    return Answer("shape", shapes[0]) if len(shapes) == 1 else None
