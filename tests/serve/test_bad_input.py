"""Bad requests get a 4xx in OpenAI's error schema, naming what was wrong, and the
server keeps serving afterwards."""

from __future__ import annotations

import base64

import httpx2
import pytest

from .conftest import API_KEY, MODEL, data_url, image_part, png_bomb, png_bytes, start_server

HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def post(url: str, body=None, content: bytes | None = None, headers=HEADERS) -> httpx2.Response:
    return httpx2.post(
        f"{url}/v1/chat/completions", json=body, content=content, headers=headers, timeout=60
    )


def chat(content, **fields) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **fields}


def with_image(url: str) -> dict:
    return chat([image_part(url), {"type": "text", "text": "What is this?"}], max_tokens=2)


def assert_error(response: httpx2.Response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


@pytest.fixture(autouse=True)
def still_serving(server):
    yield
    response = post(server.url, chat("Are you still there?", max_tokens=2, temperature=0))
    assert response.status_code == 200, "the server stopped serving after a bad request"


def test_broken_base64(server):
    response = post(server.url, with_image("data:image/png;base64,iVBORw0K!!!not-base64"))
    error = assert_error(response, 400, "invalid_base64")
    assert error["param"] == "messages.0.content.0.image_url.url"


def test_data_that_is_not_an_image(server):
    text = base64.b64encode(b"just some text, not a picture").decode()
    assert_error(
        post(server.url, with_image(f"data:image/png;base64,{text}")), 400, "invalid_image"
    )


def test_truncated_png(server):
    assert_error(post(server.url, with_image(data_url(png_bytes()[:60]))), 400, "invalid_image")


def test_unsupported_image_type(server):
    response = post(server.url, with_image("data:image/gif;base64,R0lGODlhAQABAAAAACw="))
    assert_error(response, 400, "unsupported_image_type")


@pytest.mark.parametrize("side", [6_000, 30_000])  # over the server's limit; over Pillow's too
def test_decompression_bomb_is_refused_before_decoding(server, side):
    bomb = data_url(png_bomb(side, side))
    error = assert_error(post(server.url, with_image(bomb)), 400, "invalid_image")
    assert "too large" in error["message"] or "over the limit" in error["message"]


def test_too_many_images(server):
    images = [image_part(data_url(png_bytes(i))) for i in range(4)]
    response = post(server.url, chat(images + [{"type": "text", "text": "Compare."}]))
    assert_error(response, 400, "too_many_images")


def test_image_over_the_byte_limit_is_413(server):
    big = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * (1024 * 1024 + 10)).decode()
    response = post(server.url, with_image(f"data:image/png;base64,{big}"))
    assert_error(response, 413, "image_too_large")


def test_body_over_the_limit_is_413(server):
    response = post(server.url, content=b"{" + b" " * (2 * 1024 * 1024 + 1) + b"}")
    assert_error(response, 413, "request_too_large")


def test_too_long_prompt(server):
    response = post(server.url, chat("the red cube is left of the blue sphere " * 200))
    assert_error(response, 400, "context_length_exceeded")


def test_a_typed_placeholder_without_an_image_is_text(server):
    """Only image parts place images: `<image>` typed in text is escaped, not a 400."""
    response = post(server.url, chat("What is in <image>?", max_tokens=2))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "body, param",
    [
        (chat("hi", max_token=5), "max_token"),
        (
            {**chat("hi"), "messages": [{"role": "user", "content": "hi", "colour": 1}]},
            "messages.0.colour",
        ),
        (chat([{"type": "video", "video": "x"}]), None),
    ],
)
def test_unknown_fields_are_422(server, body, param):
    error = assert_error(post(server.url, body), 422, "invalid_request")
    if param:
        assert error["param"] == param


@pytest.mark.parametrize(
    "body",
    [
        chat("hi", max_tokens="ten"),
        chat("hi", temperature="hot"),
        chat("hi", n=0),
        chat("hi", temperature=3.5),
        {"model": MODEL, "messages": "hi"},
        {"model": MODEL, "messages": []},
        {"model": MODEL, "messages": [{"role": "robot", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "hi"}]},
        chat(42),
        chat("hi", stop=[1, 2]),
    ],
)
def test_wrong_types_and_values_are_422(server, body):
    assert_error(post(server.url, body), 422, "invalid_request")


def test_invalid_json_is_400(server):
    response = post(
        server.url,
        content=b'{"model": "tiny", "messages": [',
        headers={**HEADERS, "content-type": "application/json"},
    )
    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize(
    "fields, param",
    [
        ({"n": 9}, "n"),
        ({"max_tokens": 65}, "max_tokens"),
        ({"logprobs": True}, "logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_settings_over_limits_or_unsupported_are_400(server, fields, param):
    assert assert_error(post(server.url, chat("hi", **fields)), 400)["param"] == param


def test_unknown_model_is_404(server):
    response = post(server.url, {**chat("hi"), "model": "gpt-5"})
    assert_error(response, 404, "model_not_found")


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/cat.png",
        "http://127.0.0.1:8000/health",
    ],
)
def test_image_urls_are_off_by_default(server, url):
    assert_error(post(server.url, with_image(url)), 400, "image_urls_disabled")


def test_concurrent_requests_per_key_over_the_limit_is_429(pipeline, one_thread):
    with start_server(pipeline, max_concurrent_per_key=1, max_tokens_limit=1000) as live:
        body = chat("Talk.", max_tokens=1000, stream=True, ignore_eos=True)
        with httpx2.stream(
            "POST", f"{live.url}/v1/chat/completions", json=body, headers=HEADERS, timeout=60
        ) as first:
            lines = first.iter_lines()  # kept: dropping the iterator closes the connection
            next(lines)
            assert_error(post(live.url, chat("me too")), 429, "too_many_concurrent_requests")


def test_server_at_its_request_limit_is_429(pipeline, one_thread):
    with start_server(pipeline, max_concurrent_requests=1, max_tokens_limit=1000) as live:
        body = chat("Talk.", max_tokens=1000, stream=True, ignore_eos=True)
        with httpx2.stream(
            "POST", f"{live.url}/v1/chat/completions", json=body, headers=HEADERS, timeout=60
        ) as first:
            lines = first.iter_lines()  # kept: dropping the iterator closes the connection
            next(lines)
            assert_error(post(live.url, chat("me too")), 429, "server_overloaded")


def test_draining_server_answers_503(pipeline, one_thread):
    with start_server(pipeline) as live:
        live.state.draining = True
        assert_error(post(live.url, chat("hi")), 503)
        assert httpx2.get(f"{live.url}/health").status_code == 503
        live.state.draining = False
