"""The web chat without a browser: Gradio's chat history becomes the API's messages,
the page is mounted beside the API, `ocelli ui` and `ocelli serve --no-ui` flags."""

from __future__ import annotations

import base64

import httpx2
import pytest

from ocelli.cli import build_parser
from ocelli.serve.cli import config_from_args
from ocelli.serve.ui import chat_messages

from .conftest import API_KEY, start_server


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "scene.png"
    path.write_bytes(b"\x89PNG fake")
    return path


def test_history_and_new_message_become_openai_messages(png):
    history = [
        {"role": "user", "content": [{"type": "file", "file": {"path": str(png)}}]},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A cube."}]},
    ]
    message = {"text": "And its colour?", "files": [str(png)]}
    messages = chat_messages(message, history, system="Be brief.")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    first = messages[1]["content"]
    assert [part["type"] for part in first] == ["image_url", "text"]
    url = first[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == png.read_bytes()
    assert messages[2]["content"] == "A cube."
    assert [part["type"] for part in messages[3]["content"]] == ["image_url", "text"]


def test_a_message_without_text_sends_only_its_image(png):
    messages = chat_messages({"text": "", "files": [{"path": str(png)}]}, [])
    assert messages == [{"role": "user", "content": [messages[0]["content"][0]]}]
    assert messages[0]["content"][0]["type"] == "image_url"


def test_ui_and_serve_flags():
    ui = config_from_args(build_parser().parse_args(["ui", "--model", "m"]))
    assert (ui.port, ui.ui_path) == (7860, "/ui")
    serve = config_from_args(build_parser().parse_args(["serve", "--model", "m"]))
    assert (serve.port, serve.ui_path) == (8000, "/ui")
    no_ui = config_from_args(build_parser().parse_args(["serve", "--model", "m", "--no-ui"]))
    assert no_ui.ui_path is None


def test_the_page_is_served_beside_the_api(pipeline, one_thread):
    with start_server(pipeline, api_keys=(), ui_path="/ui") as live:
        root = httpx2.get(live.url + "/", follow_redirects=False)
        assert root.status_code == 307 and root.headers["location"] == "/ui/"
        page = httpx2.get(live.url + "/ui/")
        assert page.status_code == 200 and "<html" in page.text
        config = httpx2.get(live.url + "/ui/config").json()
        assert not config.get("auth_required")
        assert httpx2.get(live.url + "/v1/models").status_code == 200


def test_with_api_keys_the_page_asks_for_one(pipeline, one_thread):
    with start_server(pipeline, ui_path="/ui") as live, httpx2.Client(base_url=live.url) as web:
        assert web.get("/ui/config").status_code == 401
        wrong = web.post("/ui/login", data={"username": "me", "password": "wrong"})
        assert wrong.status_code >= 400
        assert web.post("/ui/login", data={"username": "me", "password": API_KEY}).is_success
        assert web.get("/ui/config").status_code == 200
