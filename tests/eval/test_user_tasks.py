"""Tasks from the user's own files: LLaVA-format data, task files, and bad input."""

import json
import re

import pytest

from ocelli.errors import ConfigError, DataError
from ocelli.eval.harness import evaluate
from ocelli.eval.tasks import resolve_tasks

from .conftest import FakeBackend


@pytest.fixture
def llava_data(tmp_path, world_dir):
    image = str(world_dir / "images" / "test_000000.png")
    records = [
        {
            "id": "r1",
            "image": image,
            "answers": ["two"] * 4 + ["2"] * 6,
            "conversations": [
                {"from": "human", "value": "<image>\nHow many objects?"},
                {"from": "gpt", "value": "2"},
                {"from": "human", "value": "Is there a star?"},
                {"from": "gpt", "value": "No"},
            ],
        },
        {
            "id": "r2",
            "image": image,
            "conversations": [
                {"from": "human", "value": "<image>\nWhat colour is the circle?"},
                {"from": "gpt", "value": "red"},
            ],
        },
    ]
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(records))
    return path


def test_a_llava_file_is_a_task(llava_data, tmp_path):
    (task,) = resolve_tasks(str(llava_data))
    assert task.name == "mine" and task.source == str(llava_data)
    samples = task.build(tmp_path)
    assert [s.prompt for s in samples] == [
        "How many objects?",
        "Is there a star?",
        "What colour is the circle?",
    ]
    backend = FakeBackend(
        lambda r: {"How many objects?": "2.", "Is there a star?": "no"}.get(r.prompt, "blue")
    )
    results = evaluate(backend, str(llava_data), tmp_path / "run", progress=False)
    assert results["tasks"]["mine"]["metrics"]["accuracy"] == pytest.approx(2 / 3)


def test_a_yaml_task_file_with_vqa_scoring(llava_data, tmp_path):
    spec = tmp_path / "task.yaml"
    spec.write_text(
        "name: counting\ndata: mine.json\nprompt: '{question} Answer with a number.'\n"
        "answer: vqa\nmax_new_tokens: 4\n"
    )
    (task,) = resolve_tasks(str(spec))
    assert task.max_new_tokens == 4 and task.prompt_template == "{question} Answer with a number."
    backend = FakeBackend(lambda r: "two")
    results = evaluate(backend, str(spec), tmp_path / "run", progress=False)
    scores = results["tasks"]["counting"]["unit_scores"]
    # r1's annotators: 4 x "two" (-> "2" after normalisation), 6 x "2": all agree -> 1.0.
    assert scores["r1_0"] == 1.0
    assert backend.calls[0].prompt == "How many objects? Answer with a number."


def test_a_yes_no_task_file(llava_data, tmp_path):
    spec = tmp_path / "yn.yml"
    spec.write_text("name: yn\ndata: mine.json\nanswer: yes_no\n")
    results = evaluate(
        FakeBackend(lambda r: "No, none."), str(spec), tmp_path / "run", progress=False
    )
    assert results["tasks"]["yn"]["metrics"]["yes_ratio"] == 0.0
    assert results["tasks"]["yn"]["confusion"]["tn"] == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\n", "'data' is required"),
        ("data: mine.json\n", "'name' is required"),
        ("name: x\ndata: mine.json\nanswer: fuzzy\n", "answer must be one of exact"),
        ("name: x\ndata: mine.json\nprompt: 'no slot'\n", "containing {question}"),
        ("name: x\ndata: mine.json\nmax_new_tokens: 0\n", "positive integer"),
        ("name: x\ndata: mine.json\nmetric: f1\n", "unknown key(s) ['metric']"),
        ("name: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("42\n", "must hold a mapping"),
    ],
)
def test_malformed_task_files(llava_data, tmp_path, text, message):
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    with pytest.raises((ConfigError, DataError), match=re.escape(message)):
        tasks = resolve_tasks(str(spec))
        tasks[0].build(tmp_path)


def test_bad_data_files(tmp_path):
    with pytest.raises(ConfigError, match="task file .*missing.yaml not found"):
        resolve_tasks(str(tmp_path / "missing.yaml"))
    spec = tmp_path / "t.yaml"
    spec.write_text("name: t\ndata: nowhere.json\n")
    with pytest.raises(DataError, match="nowhere.json: file not found"):
        resolve_tasks(str(spec))[0].build(tmp_path)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": 1, "conversations": []}\n{not json\n')
    with pytest.raises(DataError, match="broken.jsonl:2: not valid JSON"):
        resolve_tasks(str(broken))[0].build(tmp_path)
    no_turns = tmp_path / "no_turns.json"
    no_turns.write_text('[{"id": 1, "conversations": []}]')
    with pytest.raises(DataError, match="record 0: needs a non-empty 'conversations'"):
        resolve_tasks(str(no_turns))[0].build(tmp_path)


def test_missing_images_of_a_user_task_are_counted(tmp_path):
    data = tmp_path / "d.json"
    record = {
        "id": "a",
        "image": "gone.png",
        "conversations": [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "x"}],
    }
    data.write_text(json.dumps([record]))
    results = evaluate(FakeBackend(lambda r: "x"), str(data), tmp_path / "run", progress=False)
    assert results["tasks"]["d"]["num_failed"] == 1
    assert "gone.png not found" in results["tasks"]["d"]["failed"][0]["error"]
