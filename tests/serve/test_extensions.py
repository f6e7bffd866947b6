"""ocelli's request extensions through the live server: VCD per request, the corrector."""

from __future__ import annotations

import httpx
import pytest

from ocelli.generate import VCDConfig
from ocelli.world.render import png_bytes as scene_png
from ocelli.world.render import render_scene
from ocelli.world.scenes import Scene, SceneObject

from .conftest import API_KEY, MODEL, data_url, image_part, png_bytes


def post(server, body):
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": MODEL, "max_tokens": 8, "temperature": 0, **body},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
    )


def with_image(text: str, image: bytes) -> list[dict]:
    return [
        {"role": "user", "content": [image_part(data_url(image)), {"type": "text", "text": text}]}
    ]


def world_image() -> bytes:
    star = SceneObject(0, "star", "red", "large", 10.88, [20, 20], [0, 0, 0, 0])
    scene = Scene("s", 64, 64, "plain", 0, [star])
    return scene_png(render_scene(scene))


def test_vcd_answer_equals_the_pipeline_with_vcd(server, pipeline):
    image = png_bytes(seed=5)
    vcd = {"alpha": 1.0, "beta": 0.1, "noise_step": 500}
    response = post(
        server, {"messages": with_image("How many spheres?", image), "ocelli": {"vcd": vcd}}
    )
    assert response.status_code == 200, response.text
    served = response.json()["choices"][0]["message"]["content"]
    expected = pipeline.chat([image], "How many spheres?", max_new_tokens=8, vcd=VCDConfig(**vcd))
    assert served == expected


def test_vcd_streams_the_same_answer(server):
    body = {"messages": with_image("Describe it.", png_bytes(seed=6)), "ocelli": {"vcd": {}}}
    whole = post(server, body).json()["choices"][0]["message"]["content"]
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        json={"model": MODEL, "max_tokens": 8, "temperature": 0, "stream": True, **body},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    import json

    text = "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in (json.loads(line[6:]) for line in lines[:-1])
        if c["choices"]
    )
    assert text == whole


@pytest.mark.parametrize(
    "vcd, field",
    [({"alpha": -1}, "alpha"), ({"beta": 1.5}, "beta"), ({"noise_step": 1000}, "noise_step"),
     ({"gamma": 1}, "gamma")],
)  # fmt: skip
def test_out_of_range_vcd_settings_are_422_naming_the_field(server, vcd, field):
    response = post(server, {"messages": with_image("Hi", png_bytes()), "ocelli": {"vcd": vcd}})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["param"] == f"ocelli.vcd.{field}" and error["type"] == "invalid_request_error"


def test_vcd_without_an_image_is_400(server):
    body = {"messages": [{"role": "user", "content": "Hi"}], "ocelli": {"vcd": {}}}
    response = post(server, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "vcd_needs_image"


def test_correct_on_a_world_image_reports_claims_and_boxes(server):
    body = {
        "messages": with_image("Describe the image.", world_image()),
        "ocelli": {"correct": True},
    }
    response = post(server, body)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    report = choice["ocelli_correction"]
    assert report["verified"] is True
    assert report["objects"] == [
        {"color": "red", "shape": "star", "size": "large", "box": report["objects"][0]["box"]}
    ]
    assert choice["message"]["content"] == report["text"]


def test_correct_on_a_non_world_image_says_it_cannot_verify(server):
    body = {"messages": with_image("Describe it.", png_bytes(seed=1)), "ocelli": {"correct": True}}
    response = post(server, body)
    assert response.status_code == 200
    report = response.json()["choices"][0]["ocelli_correction"]
    assert report["verified"] is False and "cannot verify" in report["reason"]
    assert report["text"] == report["original"]


def test_correct_without_an_image_says_so(server):
    body = {"messages": [{"role": "user", "content": "Hi"}], "ocelli": {"correct": True}}
    report = post(server, body).json()["choices"][0]["ocelli_correction"]
    assert report["verified"] is False and "no image" in report["reason"]


def test_correct_refuses_streaming(server):
    body = {
        "messages": [{"role": "user", "content": "Hi"}],
        "stream": True,
        "ocelli": {"correct": True},
    }
    response = post(server, body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "ocelli.correct"


def test_plain_requests_carry_no_correction(server):
    response = post(server, {"messages": [{"role": "user", "content": "Hi"}]})
    assert response.json()["choices"][0]["ocelli_correction"] is None


def test_openapi_documents_the_extension(server):
    spec = httpx.get(f"{server.url}/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert schemas["VCDOptions"]["properties"]["beta"]["maximum"] == 1.0
    assert "correct" in schemas["OcelliOptions"]["properties"]
    request = schemas["ChatCompletionRequest"]["properties"]["ocelli"]
    assert "OcelliOptions" in str(request)
