import json

import pytest

from ocelli.data.formats import load_conversations
from ocelli.errors import DataError


def _write(tmp_path, records, name="data.json"):
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:
        path.write_text(json.dumps(records))
    return path


def _record(**changes):
    record = {
        "id": "r1",
        "image": "img.png",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat colour is the circle?"},
            {"from": "gpt", "value": "red"},
        ],
    }
    record.update(changes)
    return record


def test_loads_llava_json_and_jsonl(tmp_path):
    (tmp_path / "img.png").write_bytes(b"not checked here")
    for name in ("data.json", "data.jsonl"):
        records = load_conversations(_write(tmp_path, [_record()], name))
        assert records[0].messages == [
            {"role": "user", "content": "<image>\nWhat colour is the circle?"},
            {"role": "assistant", "content": "red"},
        ]
        assert records[0].images == [tmp_path / "img.png"]


def test_text_only_records_need_no_image(tmp_path):
    record = _record(
        conversations=[{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]
    )
    del record["image"]
    assert load_conversations(_write(tmp_path, [record]))[0].images == []


@pytest.mark.parametrize(
    "record, message",
    [
        (_record(conversations=[]), "non-empty 'conversations'"),
        (_record(conversations=[{"from": "robot", "value": "x"}]), "unknown speaker 'robot'"),
        (_record(conversations=[{"from": "human", "value": "<image>\nhi"}]), "no assistant"),
        (_record(image=["img.png", "img.png"]), "1 '<image>' placeholder\\(s\\) but 2 image"),
        (_record(image=None), "1 '<image>' placeholder\\(s\\) but 0 image"),
        (_record(image="missing.png"), "missing.png not found"),
        (_record(conversations=[{"from": "human", "value": 3}]), "string 'value'"),
        ("just a string", "expected an object"),
    ],
)
def test_bad_records_name_the_file_and_record(tmp_path, record, message):
    (tmp_path / "img.png").write_bytes(b"x")
    path = _write(tmp_path, [_record(id="ok"), record])
    with pytest.raises(DataError, match=message) as info:
        load_conversations(path)
    assert "data.json record 1" in str(info.value)


def test_broken_json_line_is_reported_with_its_number(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(_record()) + "\n{broken\n")
    with pytest.raises(DataError, match="data.jsonl:2: not valid JSON"):
        load_conversations(path, check_images=False)


def test_missing_file_and_wrong_top_level(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_conversations(tmp_path / "nope.json")
    path = tmp_path / "obj.json"
    path.write_text('{"id": 1}')
    with pytest.raises(DataError, match="expected a JSON list"):
        load_conversations(path)
