"""sort_of_clevr, cogent and paraphrase: which samples they ask and what they report."""

import shutil

import pytest

from ocelli.errors import DataError
from ocelli.eval.harness import evaluate
from ocelli.eval.tasks import TASKS
from ocelli.eval.tasks.world_vqa_variants import cogent_dirs
from ocelli.world import WorldConfig, generate_dataset

from .conftest import FakeBackend


def _generate(out, split, **config):
    generate_dataset(out, 3, seed=5, split=split, config=WorldConfig(**config), progress=False)
    return out


@pytest.fixture(scope="module")
def sort_of_clevr_dir(tmp_path_factory):
    return _generate(tmp_path_factory.mktemp("soc") / "test", "test", mode="sort-of-clevr")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory's worlds: train and test in condition A, cogent-b in B."""
    run = tmp_path_factory.mktemp("run")
    for split, condition in (("train", "A"), ("test", "A"), ("cogent-b", "B")):
        _generate(run / "world" / split, split, cogent=condition, langs=["en"])
    return run


def _answering(samples, right):
    """An oracle right exactly on the samples `right(sample)` picks."""
    table = {(tuple(s.images), s.prompt): s for s in samples}

    def answer(request):
        sample = table[(tuple(request.images), request.prompt)]
        return sample.truth if right(sample) else "nonsense"

    return FakeBackend(answer, "picky")


def _run(task_name, data, right, out):
    samples = TASKS.get(task_name)().build(data)
    return evaluate(_answering(samples, right), task_name, out, data, progress=False)


def test_sort_of_clevr_reports_relational_and_non_relational(sort_of_clevr_dir, tmp_path):
    results = _run(
        "sort_of_clevr", sort_of_clevr_dir, lambda s: s.meta["type"] == "non-relational", tmp_path
    )
    metrics = results["tasks"]["sort_of_clevr"]["metrics"]
    assert metrics["accuracy_non_relational"] == 1.0 and metrics["accuracy_relational"] == 0.0
    assert metrics["accuracy"] == pytest.approx(0.5)  # ten of each kind per image
    assert set(metrics["by_subtype"]) >= {"shape", "closest_shape", "count_same_shape"}


def test_sort_of_clevr_refuses_a_default_world(world_dir):
    with pytest.raises(DataError, match="--mode sort-of-clevr"):
        TASKS.get("sort_of_clevr")().build(world_dir)


def test_cogent_finds_its_worlds(run_dir, tmp_path):
    world = run_dir / "world"
    expected = {"A": world / "test", "B": world / "cogent-b"}
    assert cogent_dirs(run_dir) == expected
    assert cogent_dirs(world) == expected
    assert cogent_dirs(f"{world / 'train'},{world / 'cogent-b'}") == {
        "A": world / "train",
        "B": world / "cogent-b",
    }
    lonely = tmp_path / "only-a"
    shutil.copytree(world / "test", lonely / "test")
    with pytest.raises(DataError, match="no CoGenT condition B world"):
        cogent_dirs(lonely)


def test_cogent_reports_both_conditions_and_the_gap(run_dir, tmp_path):
    results = _run("cogent", run_dir, lambda s: s.meta["condition"] == "A", tmp_path)
    task = results["tasks"]["cogent"]
    assert task["metrics"]["accuracy_a"] == 1.0 and task["metrics"]["accuracy_b"] == 0.0
    assert task["metrics"]["gap"] == 1.0 and task["primary_metric"] == "accuracy_b"
    assert all(key.startswith(("A:", "B:")) for key in task["unit_scores"])


def test_paraphrase_reports_heldout_beside_seen(world_dir, tmp_path):
    results = _run("paraphrase", world_dir, lambda s: not s.meta["heldout"], tmp_path)
    metrics = results["tasks"]["paraphrase"]["metrics"]
    assert metrics["accuracy_seen"] == 1.0 and metrics["accuracy_heldout"] == 0.0
    assert metrics["gap"] == 1.0 and set(metrics["by_type_heldout"]) <= set(metrics["by_type_seen"])


def test_paraphrase_needs_heldout_phrasings(tmp_path):
    train = _generate(tmp_path / "train", "train", langs=["en"])
    with pytest.raises(DataError, match="no held-out phrasings"):
        TASKS.get("paraphrase")().build(train)
