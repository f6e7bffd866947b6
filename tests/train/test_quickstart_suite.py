"""The quickstart's benchmark suite: the recipe's task list is checked before anything
trains, limits keep scored units whole, and the figures reach the report's table."""

import pytest

from ocelli.errors import ConfigError
from ocelli.eval.tasks import Sample
from ocelli.train.quickstart_suite import (
    check_suite,
    headline,
    suite_html,
    suite_rows,
    whole_units,
)
from ocelli.train.recipe import Recipe, load_recipe


def test_the_quickstart_suite_names_registered_tasks_with_limits():
    section = load_recipe("quickstart").eval
    assert {"mme", "mmbench_circular", "caption", "faith", "paraphrase"} <= set(section.suite)
    assert set(section.suite_limits) <= set(section.suite)
    check_suite(section)
    assert Recipe().eval.suite == []  # other recipes evaluate nothing extra


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (["eval.suite=[mme, nope]"], "unknown task\\(s\\) 'nope'; registered tasks: .*mme"),
        (["eval.suite=[mme, mme]"], "names a task twice"),
        (["eval.suite=[mme]", "eval.suite_limits={faith: 8}"], "faith not in eval.suite"),
        (["eval.suite=[mme]", "eval.suite_limits={mme: 0}"], "suite_limits.mme must be"),
    ],
)
def test_a_bad_suite_is_a_config_error(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern):
        check_suite(load_recipe("quickstart", overrides).eval)


def _samples(units: list[str]) -> list[Sample]:
    return [Sample(f"s{i}", [], "", "", {"image_id": u}) for i, u in enumerate(units)]


def test_a_limit_keeps_units_whole():
    samples = _samples(["a", "a", "b", "b", "c"])
    assert [s.meta["image_id"] for s in whole_units(samples, 3)] == ["a", "a"]
    assert len(whole_units(samples, 4)) == 4
    assert whole_units(samples, None) == samples
    assert len(whole_units(_samples(["a", "a", "a"]), 2)) == 2  # one unit: cut it anyway


def test_headline_figures_and_the_side_by_side_table():
    by_subtask = {
        "count": {"acc": 50.0, "acc_plus": 0.0, "score": 50.0},
        "color": {"acc": 100.0, "acc_plus": 100.0, "score": 200.0},
    }
    mme = headline("mme", {"total_score": 250.0, "by_subtask": by_subtask}, "total_score")
    assert mme == {"acc": 75.0, "acc_plus": 50.0, "total_score": 250.0}
    assert headline("custom", {"accuracy": 0.123456, "n": 3}, "accuracy") == {"accuracy": 0.1235}
    sft = {
        "mme": {"scoring": "loglik", "num_samples": 8, **mme},
        "caption": {"skipped": "java was not found on PATH"},
    }
    aligned = {"mme": {"scoring": "loglik", "num_samples": 8, **mme, "acc": 80.0}}
    rows = suite_rows(sft, aligned)
    acc = next(row for row in rows if row["measure"] == "acc")
    assert acc["SFT"] == 75.0 and acc["aligned"] == 80.0 and acc["change"] == 5.0
    assert {"task": "caption", "measure": "skipped", "SFT": "java was not found on PATH"} in rows
    html = suite_html(sft, aligned)
    assert "Benchmark suite" in html and "eval/suite/mme/report.html" in html
    assert "value" in suite_html(sft, {}) and suite_html({}, {}) == ""
