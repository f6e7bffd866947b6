"""`ocelli eval export-task`: a dataset `datasets` loads and an lmms-eval task that parses."""

import ast
import importlib.util
import json

import pytest
import yaml

from ocelli.errors import ConfigError
from ocelli.eval.export import UTILS_FUNCTIONS, export_task
from ocelli.eval.tasks import TASKS


class _LmmsEvalLoader(yaml.SafeLoader):
    """lmms-eval's YAML: `!function module.name` names a function in utils.py."""


_LmmsEvalLoader.add_constructor("!function", lambda loader, node: ("function", node.value))


def test_export_loads_with_datasets_and_scores_like_ocelli(world_dir, tmp_path):
    import datasets

    out = tmp_path / "export"
    summary = export_task("pope_random", world_dir, out)
    samples = TASKS.get("pope_random")().build(world_dir)
    loaded = datasets.load_dataset(str(out), split="test")
    assert len(loaded) == summary["num_samples"] == len(samples)
    first = loaded[0]
    assert first["id"] == samples[0].id and first["prompt"] == samples[0].prompt
    assert first["image"].size == (80, 80) and json.loads(first["truth"]) == samples[0].truth
    assert first["candidates"] == ["yes", "no"]

    definition = yaml.load((out / "pope_random.yaml").read_text(), Loader=_LmmsEvalLoader)
    assert definition["task"] == "ocelli_pope_random" and definition["test_split"] == "test"
    assert datasets.load_dataset(definition["dataset_path"], split="test").num_rows == len(loaded)
    source = (out / "utils.py").read_text()
    defined = {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
    named = {v[1].split(".", 1)[1] for v in definition.values() if isinstance(v, tuple)}
    assert named == set(UTILS_FUNCTIONS) <= defined

    spec = importlib.util.spec_from_file_location("exported_utils", out / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    assert utils.doc_to_text(first) == utils.doc_to_text(first, {}) == samples[0].prompt
    assert utils.doc_to_visual(first)[0].mode == "RGB"
    # lmms-eval hands process_results the row without its image columns
    doc = {key: value for key, value in first.items() if key != "image"}
    truth = samples[0].truth
    assert utils.process_results(doc, [f"{truth.capitalize()}, there is."]) == {"score": 1.0}
    assert utils.process_results(doc, ["no" if truth == "yes" else "yes"]) == {"score": 0.0}


def test_export_refusals(world_dir, tmp_path):
    with pytest.raises(ConfigError, match="no per-sample score"):
        export_task("caption", world_dir, tmp_path / "caption")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(ConfigError, match="not empty"):
        export_task("mme", world_dir, tmp_path / "full")


def test_export_command(cli, world_dir, tmp_path):
    result = cli("eval", "export-task", "mme", "--data", world_dir, "--out", tmp_path / "mme")
    assert result.code == 0 and "samples of mme" in result.out
    assert (tmp_path / "mme" / "mme.yaml").is_file()
    assert cli("eval", "export-task", "mme", "--data", world_dir).code != 0
