"""`ocelli eval --model openai:URL` against a live ocelli server gives the answers and
metrics that evaluating the same checkpoint directly gives: the server renders the same
prompt through the one chat template, decodes greedily, and stops where the local
backend stops."""

from __future__ import annotations

import json

import pytest

from ocelli.eval.harness import evaluate

from .conftest import API_KEY, MODEL, start_server

LIMIT = 16


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    from ocelli.world import QUICKSTART_WORLD, generate_dataset

    out = tmp_path_factory.mktemp("serve-eval-world") / "test"
    generate_dataset(out, 8, seed=5, split="test", config=QUICKSTART_WORLD, progress=False)
    return out


def _answers(out_dir) -> dict[str, tuple]:
    """Sample id -> (status, raw reply, extracted answer, score), from the run's records."""
    answers = {}
    for path in sorted(out_dir.rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            answers[record["id"]] = tuple(record[k] for k in ("status", "raw", "answer", "score"))
    return answers


def test_eval_through_the_server_equals_eval_of_the_checkpoint(
    model_dir, pipeline, one_thread, world_dir, tmp_path
):
    direct = evaluate(
        str(model_dir),
        "world_vqa",
        tmp_path / "direct",
        data_dir=world_dir,
        limit=LIMIT,
        progress=False,
    )
    with start_server(pipeline, max_batch_size=16, max_tokens_limit=256) as live:
        served = evaluate(
            f"openai:{live.url}/v1",
            "world_vqa",
            tmp_path / "served",
            data_dir=world_dir,
            limit=LIMIT,
            api_model=MODEL,
            api_key=API_KEY,
            progress=False,
        )
    direct_answers, served_answers = _answers(tmp_path / "direct"), _answers(tmp_path / "served")
    assert len(direct_answers) == LIMIT
    assert len({raw for _, raw, _, _ in direct_answers.values()}) > 1  # real, varied replies
    assert served_answers == direct_answers
    assert all(status == "ok" for status, *_ in served_answers.values())
    for name in ("metrics", "unit_scores", "num_scored", "num_failed", "prompts_sha256"):
        assert served["tasks"]["world_vqa"][name] == direct["tasks"]["world_vqa"][name], name
