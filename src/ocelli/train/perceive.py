"""Stage 1b, perception warm-up: connector and LM trained on single questions that one
look at the image answers (what colour, size or shape is an object, how many objects
are there), before stage 2's multi-turn conversations.

Why: a from-scratch LM given the full mix of question types first learns what the
question alone predicts, and on a budget of minutes it never gets further (the
quickstart stayed at its blind baseline in every variant of docs/training-small-mllms.md,
Findings 2-12). Trained first on questions whose answer the question cannot predict, it
starts reading the image within a few hundred steps, and stage 2 then builds on that
(Finding 13). Larger MLLMs add a comparable stage of dense perception data with the LM
unfrozen before instruction tuning (ShareGPT4V, InternVL).

The stage's data is built from the training world's questions.jsonl, filtered by
`perceive.question_types` ("attribute" or "attribute/color": a type, or a type and
subtype) and the world's languages, one question per conversation, shuffled with the
recipe's seed, and written to RUN/perceive/data.json so the run shows what it trained on.
`perceive.data` names a LLaVA file of one's own instead.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from ocelli.errors import ConfigError
from ocelli.utils.io import atomic_write_json
from ocelli.world.loading import load_questions

# Questions whose answer the image alone decides and whose blind baseline is low.
SINGLE_LOOK_TYPES = ("attribute", "count/total")


def perception_conversations(
    world_train: Path, question_types: list[str], langs: list[str], seed: int
) -> list[dict[str, Any]]:
    """One LLaVA conversation per training question of `question_types` in `langs`,
    image paths relative to `world_train`, in a seeded shuffled order."""
    questions = load_questions(world_train)
    known = {q["type"] for q in questions} | {f"{q['type']}/{q['subtype']}" for q in questions}
    unknown = sorted(set(question_types) - known)
    if unknown:
        raise ConfigError(
            f"perceive.question_types names {', '.join(unknown)}, which the world at "
            f"{world_train} does not have; choose from {', '.join(sorted(known))}"
        )
    wanted = set(question_types)
    chosen = [
        q
        for q in questions
        if q["lang"] in langs
        and not q.get("heldout", False)
        and (q["type"] in wanted or f"{q['type']}/{q['subtype']}" in wanted)
    ]
    if not chosen:
        raise ConfigError(
            f"no training question of {', '.join(question_types)} in {', '.join(langs)} under "
            f"{world_train}; widen perceive.question_types or the world's languages"
        )
    records = [
        {
            "id": question["id"],
            "image": question["image"],
            "conversations": [
                {"from": "human", "value": f"<image>\n{question['question']}"},
                {"from": "gpt", "value": question["answer"]},
            ],
        }
        for question in chosen
    ]
    random.Random(seed).shuffle(records)
    return records


def write_perception_data(
    world_train: Path, out_file: Path, question_types: list[str], langs: list[str], seed: int
) -> int:
    """Write the stage's conversations to `out_file` (atomically); returns how many."""
    records = perception_conversations(world_train, question_types, langs, seed)
    atomic_write_json(out_file, records)
    return len(records)
