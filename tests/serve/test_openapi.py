"""/openapi.json describes the server that answers: its routes, its request schema (no
unknown fields), and the fields of the bodies it actually sends."""

from __future__ import annotations

import json

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import API_KEY, MODEL, data_url, image_part, png_bytes

HEADERS = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture(scope="module")
def spec(server):
    response = httpx2.get(f"{server.url}/openapi.json")
    assert response.status_code == 200
    return response.json()


def properties(spec: dict, name: str) -> set[str]:
    return set(spec["components"]["schemas"][name]["properties"])


def test_lists_every_route_the_app_serves(spec, server):
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert documented == {
        ("/v1/chat/completions", "post"),
        ("/v1/models", "get"),
        ("/health", "get"),
        ("/metrics", "get"),
    }
    served = {
        (route.path, method.lower())
        for route in server.app.routes
        for method in getattr(route, "methods", ())
        if route.include_in_schema and method != "HEAD"
    }
    assert served == documented


def test_request_schema_forbids_unknown_fields_and_errors_use_openai_schema(spec):
    request = spec["components"]["schemas"]["ChatCompletionRequest"]
    assert request["additionalProperties"] is False
    assert {"model", "messages", "max_tokens", "stream", "n", "seed", "stop"} <= set(
        request["properties"]
    )
    responses = spec["paths"]["/v1/chat/completions"]["post"]["responses"]
    for status in ("400", "401", "404", "413", "422", "429", "503"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema["$ref"].endswith("/ErrorResponse")
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_live_bodies_have_the_documented_fields(spec, server):
    def post(body):
        return httpx2.post(f"{server.url}/v1/chat/completions", json=body, headers=HEADERS)

    content = [image_part(data_url(png_bytes())), {"type": "text", "text": "hi"}]
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 3}
    completion = post(body).json()
    assert set(completion) == properties(spec, "ChatCompletion")
    assert set(completion["choices"][0]) == properties(spec, "Choice")
    assert set(completion["usage"]) == properties(spec, "Usage")
    streamed = post({**body, "stream": True, "stream_options": {"include_usage": True}}).text
    chunks = [json.loads(e[6:]) for e in streamed.split("\n\n") if e.startswith("data: {")]
    assert all(set(chunk) == properties(spec, "ChatCompletionChunk") for chunk in chunks)
    error = post({**body, "max_tokens": "many"}).json()
    assert set(error) == properties(spec, "ErrorResponse")
    assert set(error["error"]) == properties(spec, "ErrorDetail")
    models = httpx2.get(f"{server.url}/v1/models", headers=HEADERS).json()
    assert set(models) == properties(spec, "ModelList")


# --- fuzzing the request schema -------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
IMAGES = st.sampled_from(
    [
        data_url(png_bytes(size=8)),
        "data:image/png;base64,@@@",
        "data:image/jpeg;base64,",
        "data:text/plain;base64,aGk=",
        "data:image/webp;base64," + "A" * 40,
        "http://169.254.169.254/",
        "file:///etc/passwd",
        "",
    ]
)
TEXT_PART = st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=40)})
IMAGE_PART = st.fixed_dictionaries(
    {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": IMAGES})}
)
ROLES = st.sampled_from(["system", "developer", "user", "assistant"])
# Requests that pass the schema, so the fuzzing reaches image decoding, templating,
# limits and generation, not only validation.
VALID_MESSAGE = st.fixed_dictionaries(
    {"role": ROLES, "content": st.text(max_size=60) | st.lists(TEXT_PART | IMAGE_PART, max_size=3)}
)
VALID_BODY = st.fixed_dictionaries(
    {
        "model": st.sampled_from([MODEL, "default"]),
        "messages": st.lists(VALID_MESSAGE, min_size=1, max_size=3),
    },
    optional={
        "max_tokens": st.integers(1, 4),
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0.01, 1),
        "n": st.integers(1, 2),
        "stream": st.booleans(),
        "stop": st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=4),
        "seed": st.integers(-(2**63), 2**63),
    },
)
JUNK_MESSAGE = st.fixed_dictionaries(
    {
        "role": ROLES | JSON,
        "content": st.text(max_size=60)
        | st.lists(TEXT_PART | IMAGE_PART | JSON, max_size=3)
        | JSON,
    },
    optional={"name": st.text(max_size=5) | JSON, "extra": JSON},
)
SMALL = st.integers(-2, 6)
JUNK_BODY = st.fixed_dictionaries(
    {"model": st.sampled_from([MODEL, "default", "other"]) | JSON},
    optional={
        "messages": st.lists(JUNK_MESSAGE, max_size=3) | JSON,
        "max_tokens": SMALL | JSON,
        "max_completion_tokens": SMALL,
        "temperature": st.floats(-1, 3) | JSON,
        "top_p": st.floats(-1, 2),
        "n": st.integers(-1, 3),
        "stream": st.booleans() | JSON,
        "stop": st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=5) | JSON,
        "seed": st.integers(-(2**70), 2**70),
        "logprobs": st.booleans(),
        "unknown_field": JSON,
    },
)
BODY = VALID_BODY | JUNK_BODY


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=BODY)
def test_fuzzed_requests_never_get_a_server_error(server, body):
    try:
        payload = json.dumps(body, allow_nan=False).encode()
    except ValueError:
        payload = json.dumps(body).encode()  # NaN and Infinity: not JSON, must still be a 4xx
    response = httpx2.post(
        f"{server.url}/v1/chat/completions",
        content=payload,
        headers={**HEADERS, "content-type": "application/json"},
        timeout=60,
    )
    assert response.status_code < 500, (body, response.text)
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
