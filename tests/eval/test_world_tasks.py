"""The built-in world tasks: what they ask, from which data, and how an oracle scores."""

from collections import Counter

import pytest

from ocelli.errors import DataError, RegistryError
from ocelli.eval.tasks import TASKS, resolve_tasks
from ocelli.eval.tasks.world_sampling import ObjectStats, absent_objects, combos, image_rng
from ocelli.world import load_scenes

BUILT_IN = [
    "caption",
    "chair",
    "faith",
    "mmbench_circular",
    "mme",
    "paraphrase",
    "pope_adversarial",
    "pope_popular",
    "pope_random",
    "world_vqa",
]
# Tasks that need a world of their own (tests/eval/test_world_vqa_variants.py).
OWN_WORLD = ["cogent", "sort_of_clevr"]


def test_registry_lists_the_built_in_tasks():
    assert TASKS.names() == sorted(BUILT_IN + OWN_WORLD)
    for name in BUILT_IN + OWN_WORLD:
        task = TASKS.get(name)()
        assert task.name == name and task.describe()["primary_metric"] == task.primary_metric


def test_unknown_and_repeated_task_names():
    with pytest.raises(RegistryError, match="unknown task 'vqa2'; registered tasks: caption"):
        resolve_tasks("world_vqa,vqa2")
    with pytest.raises(Exception, match="given twice"):
        resolve_tasks("mme,mme")
    with pytest.raises(Exception, match="no task given"):
        resolve_tasks(" , ")


def test_every_task_builds_deterministically(world_dir):
    for task in resolve_tasks(",".join(BUILT_IN)):
        first, second = task.build(world_dir), task.build(world_dir)
        assert first and first == second, task.name
        assert len({s.id for s in first}) == len(first), f"{task.name}: duplicate ids"


@pytest.mark.parametrize("how", ["random", "popular", "adversarial"])
def test_pope_asks_three_present_and_three_absent_objects(world_dir, how):
    samples = TASKS.get(f"pope_{how}")().build(world_dir)
    scenes = {s.id: s for s in load_scenes(world_dir)}
    by_image = Counter((s.meta["image_id"], s.truth) for s in samples)
    assert set(by_image.values()) == {3}
    for sample in samples:
        present = {" ".join(c) for c in combos(scenes[sample.meta["image_id"]])}
        assert (sample.meta["object"] in present) == (sample.truth == "yes")
        assert sample.prompt.startswith("Is there a") and sample.prompt.endswith("in the image?")


def test_negative_sampling_by_hand():
    red_circle, blue_star, green_square, gray_star = (
        ("red", "circle"),
        ("blue", "star"),
        ("green", "square"),
        ("gray", "star"),
    )
    stats = ObjectStats(
        frequency=Counter({red_circle: 5, blue_star: 4, green_square: 2, gray_star: 1}),
        cooccurrence=Counter(
            {(blue_star, red_circle): 1, (gray_star, red_circle): 1, (green_square, gray_star): 1}
        ),
    )
    rng = image_rng(0, "img", "test")
    # The image shows a red circle; popular: the most frequent other objects first.
    assert absent_objects([red_circle], stats, "popular", 2, rng) == [blue_star, green_square]
    # Adversarial: those seen most often with it (ties by frequency): blue star, gray star.
    assert absent_objects([red_circle], stats, "adversarial", 2, rng) == [blue_star, gray_star]
    picked = absent_objects([red_circle], stats, "random", 3, image_rng(0, "img", "test"))
    assert len(set(picked)) == 3 and red_circle not in picked  # from the whole vocabulary


def test_samples_do_not_depend_on_the_other_images(world_dir, tmp_path):
    """A per-image seed: dropping images leaves the others' questions unchanged."""
    import shutil

    small = tmp_path / "small"
    shutil.copytree(world_dir, small)
    lines = (small / "scenes.jsonl").read_text().splitlines()
    (small / "scenes.jsonl").write_text("\n".join(lines[:6]) + "\n")
    full = {s.id: s.prompt for s in TASKS.get("mme")().build(world_dir)}
    part = {s.id: s.prompt for s in TASKS.get("mme")().build(small)}
    assert part and all(full[key] == prompt for key, prompt in part.items())


def test_mme_pairs_one_yes_and_one_no_per_image_and_subtask(world_dir):
    samples = TASKS.get("mme")().build(world_dir)
    pairs = Counter((s.meta["image_id"], s.meta["subtask"]) for s in samples)
    assert set(pairs.values()) == {2}
    assert {s.meta["subtask"] for s in samples} == {"existence", "count", "color", "position"}
    truths = Counter((s.meta["image_id"], s.meta["subtask"], s.truth) for s in samples)
    assert set(truths.values()) == {1}


def test_mmbench_rotates_the_options(world_dir):
    samples = TASKS.get("mmbench_circular")().build(world_dir)
    first = [s for s in samples if s.meta["question_id"] == samples[0].meta["question_id"]]
    assert [s.meta["rotation"] for s in first] == [0, 1, 2, 3]
    right = first[0].meta["options"]["ABCD".index(first[0].truth)]
    for sample in first:
        assert sample.meta["options"]["ABCD".index(sample.truth)] == right
        assert "A. " in sample.prompt and "letter" in sample.prompt
    assert len({s.truth for s in first}) == 4  # the right answer visits every letter


def test_world_tasks_need_their_files(tmp_path):
    for name, file in (
        ("world_vqa", "questions.jsonl"),
        ("mme", "scenes.jsonl"),
        ("caption", "captions.jsonl"),
    ):
        with pytest.raises(DataError, match=file):
            TASKS.get(name)().build(tmp_path)
    (tmp_path / "scenes.jsonl").write_text('{"id": "x"}\n{broken\n')
    with pytest.raises(DataError, match="scenes.jsonl:1: missing key"):
        TASKS.get("pope_random")().build(tmp_path)


def test_relaxed_accuracy_of_reasoning_answers_reads_the_verdict_as_exact_match_does():
    """A right verdict with a wrong rationale is right in both metrics; relaxed matching
    never looks for the truth's rationale, nor at words inside the model's rationale."""
    records = [
        {
            "raw": "No. The image has 0 stars and 1 circle.",
            "truth": "No. The image has 1 star and 1 circle.",
            "meta": {"type": "reasoning", "lang": "en"},
        },
        {
            "raw": "是。图中有1个黄色物体和0个棕色物体。",
            "truth": "是。图中有1个棕色物体和0个青色物体。",
            "meta": {"type": "reasoning", "lang": "zh"},
        },
        {
            "raw": "Yes. No other object is larger.",
            "truth": "No. The image has 1 star and 1 circle.",
            "meta": {"type": "reasoning", "lang": "en"},
        },
        {"raw": "It is red.", "truth": "red", "meta": {"type": "attribute", "lang": "en"}},
    ]
    task = TASKS.get("world_vqa")()
    for index, record in enumerate(records):
        record["id"] = str(index)
        record["score"] = task.score(task.extract(record["raw"], None), _Truth(record))
    metrics = task.aggregate(records).metrics
    assert [r["score"] for r in records] == [1.0, 1.0, 0.0, 0.0]
    assert metrics["relaxed_accuracy"] == 0.75  # the last one: "red" found in the sentence


class _Truth:
    def __init__(self, record):
        self.truth, self.meta = record["truth"], record["meta"]
