"""Tasks on Hugging Face `datasets` data on disk: a save_to_disk folder with a PIL image
column, parquet and JSON Lines files with image paths, column mapping, splits, and bad
input (missing column, missing path, missing image) with errors that say what to fix."""

import json

import pytest
from PIL import Image

from ocelli.errors import ConfigError, DataError
from ocelli.eval.harness import evaluate
from ocelli.eval.tasks import resolve_tasks

from .conftest import FakeBackend

datasets = pytest.importorskip("datasets")

ROWS = [
    ("What colour is the square?", "red", "red"),
    ("How many shapes?", "2", "red"),
    ("What colour is the circle?", "blue", "blue"),
]


@pytest.fixture(autouse=True)
def image_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("OCELLI_IMAGE_CACHE", str(tmp_path / "image-cache"))
    return tmp_path / "image-cache"


def _image(colour):
    return Image.new("RGB", (16, 16), colour)


def _task_file(tmp_path, body):
    path = tmp_path / "task.yaml"
    path.write_text(body)
    return str(path)


def oracle():
    answers = {question: answer for question, answer, _ in ROWS}
    return FakeBackend(lambda request: answers[request.prompt.split(" Answer")[0]].upper())


def test_a_save_to_disk_dataset_with_pil_images(tmp_path, image_cache):
    data = datasets.Dataset.from_dict(
        {
            "q": [q for q, _, _ in ROWS],
            "a": [a for _, a, _ in ROWS],
            "picture": [_image(colour) for _, _, colour in ROWS],
            "qid": ["x1", "x2", "x3"],
        }
    ).cast_column("picture", datasets.Image())
    datasets.DatasetDict({"test": data}).save_to_disk(str(tmp_path / "shapes"))
    spec = _task_file(
        tmp_path,
        "name: shapes\ndataset: shapes\nprompt: '{question} Answer briefly.'\n"
        "columns: {image: picture, question: q, answer: a, id: qid}\n",
    )
    (task,) = resolve_tasks(spec)
    samples = task.build(tmp_path)
    assert [s.id for s in samples] == ["x1", "x2", "x3"]
    assert samples[0].prompt == "What colour is the square? Answer briefly."
    # The two rows with the same picture share one cached file.
    assert samples[0].images == samples[1].images != samples[2].images
    assert len(list(image_cache.iterdir())) == 2
    assert Image.open(samples[2].images[0]).getpixel((0, 0)) == (0, 0, 255)
    results = evaluate(oracle(), spec, tmp_path / "run", progress=False)
    task_result = results["tasks"]["shapes"]
    assert task_result["metrics"]["accuracy"] == 1.0 and task_result["num_scored"] == 3
    assert task_result["definition"]["protocol"]["columns"]["image"] == "picture"


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_a_data_file_with_image_paths(tmp_path, suffix):
    (tmp_path / "pics").mkdir()
    for _, _, colour in ROWS:
        _image(colour).save(tmp_path / "pics" / f"{colour}.png")
    data = datasets.Dataset.from_dict(
        {
            "question": [q for q, _, _ in ROWS],
            "answer": [a for _, a, _ in ROWS],
            "path": [f"{colour}.png" for _, _, colour in ROWS],
        }
    )
    target = tmp_path / f"shapes{suffix}"
    data.to_parquet(str(target)) if suffix == ".parquet" else data.to_json(str(target))
    spec = _task_file(
        tmp_path,
        f"name: files\ndataset: shapes{suffix}\nimage_root: pics\ncolumns: {{image: path}}\n",
    )
    (task,) = resolve_tasks(spec)
    samples = task.build(tmp_path)
    assert samples[2].images == [str((tmp_path / "pics" / "blue.png").resolve())]
    results = evaluate(oracle(), spec, tmp_path / "run", progress=False)
    assert results["tasks"]["files"]["metrics"]["accuracy"] == 1.0


def test_vqa_answers_column(tmp_path):
    _image("red").save(tmp_path / "red.png")
    rows = [{"question": "What colour?", "answers": ["red"] * 3 + ["pink"], "image": "red.png"}]
    (tmp_path / "v.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    spec = _task_file(
        tmp_path,
        "name: v\ndataset: v.jsonl\nanswer: vqa\ncolumns: {answer: null, answers: answers}\n",
    )
    (sample,) = resolve_tasks(spec)[0].build(tmp_path)
    assert sample.meta["answers"] == ["red", "red", "red", "pink"] and sample.truth == "red"


def test_bad_datasets_say_what_to_fix(tmp_path):
    data = datasets.Dataset.from_dict({"question": ["Q?"], "answer": ["a"], "image": ["nope.png"]})
    data.to_parquet(str(tmp_path / "d.parquet"))
    missing_column = _task_file(
        tmp_path, "name: d\ndataset: d.parquet\ncolumns: {question: text}\n"
    )
    with pytest.raises(DataError, match=r"no column 'text' \(the question\); its columns are"):
        resolve_tasks(missing_column)[0].build(tmp_path)
    missing_image = _task_file(tmp_path, "name: d\ndataset: d.parquet\n")
    with pytest.raises(DataError, match="image file .*nope.png not found"):
        resolve_tasks(missing_image)[0].build(tmp_path)
    missing_path = _task_file(tmp_path, "name: d\ndataset: elsewhere\n")
    with pytest.raises(DataError, match="dataset .*elsewhere not found"):
        resolve_tasks(missing_path)[0].build(tmp_path)
    (tmp_path / "d.txt").write_text("hello")
    with pytest.raises(DataError, match="cannot read .txt"):
        resolve_tasks(_task_file(tmp_path, "name: d\ndataset: d.txt\n"))[0].build(tmp_path)
    both = _task_file(tmp_path, "name: d\ndataset: d.parquet\ndata: x.json\n")
    with pytest.raises(ConfigError, match="only one of 'data' and 'dataset'"):
        resolve_tasks(both)
    with pytest.raises(ConfigError, match="columns must map"):
        resolve_tasks(_task_file(tmp_path, "name: d\ndataset: d.parquet\ncolumns: {picture: x}\n"))


def test_a_dataset_dict_needs_its_split_named(tmp_path):
    part = datasets.Dataset.from_dict({"question": ["Q?"], "answer": ["a"], "image": [None]})
    datasets.DatasetDict({"train": part, "test": part}).save_to_disk(str(tmp_path / "two"))
    with pytest.raises(DataError, match="split.*train, test; name one with `split:`"):
        resolve_tasks(_task_file(tmp_path, "name: t\ndataset: two\n"))[0].build(tmp_path)
    (sample,) = resolve_tasks(_task_file(tmp_path, "name: t\ndataset: two\nsplit: test\n"))[
        0
    ].build(tmp_path)
    assert sample.images == [] and sample.truth == "a"
