"""The LLM judge against a fake OpenAI-compatible judge started here on 127.0.0.1:
verdict parsing, scores, unparseable verdicts and failed requests counted apart (never
scored), resume, an unreachable judge, and bad options."""

import json

import pytest

from ocelli.errors import ConfigError
from ocelli.eval.harness import evaluate
from ocelli.eval.judge import DEFAULT_TEMPLATE, Judge, check_template, parse_rating
from ocelli.eval.tasks import resolve_tasks

from .conftest import FakeBackend, JSONHandler, serving


class FakeJudge(JSONHandler):
    """Rates by what the graded answer says: the reference -> 10, "garbage" -> a reply
    without a rating, "down" -> HTTP 503 while `down` is set, anything else -> 2."""

    down = True
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.headers.get("Authorization"), body))
        prompt = body["messages"][0]["content"]
        answer = prompt.split("Answer to grade: ", 1)[1].split("\n", 1)[0]
        reference = prompt.split("Reference answer: ", 1)[1].split("\n", 1)[0]
        if "down" in answer and type(self).down:
            return self._send(503, {"error": {"message": "overloaded"}})
        if "garbage" in answer:
            text = "The answer seems fine to me, a solid eight out of ten."
        elif answer == reference:
            text = "Same meaning as the reference.\nRating: [[10]]"
        else:
            text = "Wrong colour.\nRating: [[2]]"
        return self._send(200, {"choices": [{"message": {"role": "assistant", "content": text}}]})


@pytest.fixture
def judge_url():
    FakeJudge.down, FakeJudge.seen = True, []
    with serving(FakeJudge) as url:
        yield f"openai:{url}/v1"


ANSWERS = {
    "Describe the big shape.": "a red circle",  # = reference: 10
    "Describe the small shape.": "a green square",  # wrong: 2
    "What is left of the circle?": "garbage garbage",  # unparseable
    "What is right of the circle?": "the judge is down",  # judge request fails
}


@pytest.fixture
def judge_task(tmp_path, world_dir):
    image = str(world_dir / "images" / "test_000000.png")
    records = [
        {
            "id": f"r{index}",
            "image": image,
            "conversations": [
                {"from": "human", "value": f"<image>\n{question}"},
                {"from": "gpt", "value": "a red circle" if index == 0 else "a blue square"},
            ],
        }
        for index, question in enumerate(ANSWERS)
    ]
    (tmp_path / "open.json").write_text(json.dumps(records))
    path = tmp_path / "open.yaml"
    path.write_text("name: open\ndata: open.json\nanswer: judge\n")
    return path


def model():
    return FakeBackend(lambda request: ANSWERS[request.prompt])


def test_parse_rating():
    assert parse_rating("Close enough.\nRating: [[7]]") == 7
    assert parse_rating("Rating: [[ 10 ]]") == 10 and parse_rating("[[0]]") == 0
    assert parse_rating("I'd say [[6]]. Rating: [[6]]") == 6  # repeated, agreeing
    for bad in ("Rating: 7", "[[6]] or [[7]]", "[[11]]", "[[7.5]]", "[[-1]]", "", None):
        assert parse_rating(bad) is None, bad


def test_judge_template_is_checked():
    assert check_template(DEFAULT_TEMPLATE, "x") == DEFAULT_TEMPLATE
    with pytest.raises(ConfigError, match="lacks reference"):
        check_template("{question} {answer}", "x")
    with pytest.raises(ConfigError, match="may only use"):
        check_template("{question} {reference} {answer} {image}", "x")


def test_judged_task_scores_counts_and_records(judge_task, judge_url, tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-judge")
    backend = model()
    options = dict(judge=judge_url, judge_model="judge-x", judge_api_key_env="JUDGE_KEY")
    results = evaluate(
        backend, str(judge_task), tmp_path / "run", progress=False, judge_retries=1, **options
    )
    task = results["tasks"]["open"]
    # Rated: 10 and 2 -> (1.0 + 0.2) / 2; the garbage verdict and the failure are not scored.
    assert task["metrics"]["judge_score"] == pytest.approx(0.6)
    assert (task["num_scored"], task["num_unparseable_verdicts"], task["num_judge_failed"]) == (
        2,
        1,
        1,
    )
    assert task["unparseable_verdicts"][0]["reply"].startswith("The answer seems fine")
    assert "HTTP 503" in task["judge_failed"][0]["error"]
    assert task["definition"]["judge_template"] == DEFAULT_TEMPLATE
    judge = results["run"]["judge"]
    assert judge["model"] == "judge-x" and judge["api_key_env"] == "JUDGE_KEY"
    assert "sk-judge" not in json.dumps(results)
    auth, body = FakeJudge.seen[0]
    assert auth == "Bearer sk-judge" and body["model"] == "judge-x" and body["temperature"] == 0
    # 1 + 1 retry for the failing one, 1 for each of the others.
    assert len(FakeJudge.seen) == 5
    report = (tmp_path / "run" / "report.html").read_text()
    assert "judge: 1 unparseable verdict(s), 1 failed request(s)" in report
    # A rerun asks the model nothing and the judge only what failed.
    FakeJudge.down, FakeJudge.seen = False, []
    again = model()
    results = evaluate(again, str(judge_task), tmp_path / "run", progress=False, **options)
    task = results["tasks"]["open"]
    assert again.calls == [] and len(FakeJudge.seen) == 1
    assert (task["num_scored"], task["num_unparseable_verdicts"], task["num_judge_failed"]) == (
        3,
        1,
        0,
    )
    assert task["metrics"]["judge_score"] == pytest.approx((1.0 + 0.2 + 0.2) / 3)


def test_unreachable_judge_scores_nothing(judge_task, tmp_path):
    results = evaluate(
        model(),
        str(judge_task),
        tmp_path / "run",
        progress=False,
        judge="openai:http://127.0.0.1:9/v1",
        judge_timeout=1,
        judge_retries=0,
    )
    task = results["tasks"]["open"]
    assert task["num_scored"] == 0 and task["num_judge_failed"] == 4
    assert task["metrics"]["judge_score"] is None
    assert "unreachable" in task["judge_failed"][0]["error"]


def test_judge_options_are_checked(judge_task, tmp_path):
    with pytest.raises(ConfigError, match="scored by an LLM judge; pass --judge"):
        evaluate(model(), str(judge_task), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="expected openai:http://host:port/v1"):
        Judge("http://127.0.0.1:1/v1")
    with pytest.raises(ConfigError, match="timeout must be positive"):
        Judge("openai:http://127.0.0.1:1/v1", timeout=0)
    bad = judge_task.parent / "bad.yaml"
    bad.write_text("name: b\ndata: open.json\nanswer: exact\njudge_prompt: '{question}'\n")
    with pytest.raises(ConfigError, match="needs answer: judge"):
        resolve_tasks(str(bad))


def test_the_command_line(cli, model_dir, judge_task, judge_url, tmp_path, monkeypatch):
    args = ["eval", "--model", model_dir, "--tasks", judge_task, "--out", tmp_path / "out"]
    cli(*args).assert_user_error("scored by an LLM judge", "--judge openai:")
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-cli")
    judge_args = ["--judge", judge_url, "--judge-model", "j", "--judge-api-key-env", "MY_JUDGE_KEY"]
    result = cli(*args, *judge_args, "--judge-timeout", "5", "--judge-retries", "0")
    assert result.code == 0, result.err
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    task = stored["tasks"]["open"]
    assert task["primary_metric"] == "judge_score" and task["num_scored"] == 4
    assert stored["run"]["judge"]["model"] == "j" and stored["run"]["judge"]["retries"] == 0
    assert FakeJudge.seen[-1][0] == "Bearer sk-cli"
