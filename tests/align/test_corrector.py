"""The shape detector, the Woodpecker-style corrector, POVID pairs and `ocelli chat --correct`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ocelli.align.corrector import Corrector, verification_question
from ocelli.align.detector import ShapeDetector, UnverifiableImage, evaluate_detector
from ocelli.align.povid import noised_image, povid_pairs
from ocelli.world import text
from ocelli.world.loading import load_scenes
from ocelli.world.spec import Ref


@pytest.fixture(scope="module")
def first(world_dir):
    scene = load_scenes(world_dir)[0]
    return scene, world_dir / scene.image


def test_detector_finds_every_object_of_the_world(world_dir):
    metrics = evaluate_detector(world_dir)
    assert metrics["precision"] == 1.0 and metrics["recall"] == 1.0
    assert metrics["size_accuracy"] == 1.0 and metrics["count_accuracy"] == 1.0


def test_detector_refuses_images_the_world_cannot_draw(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    with pytest.raises(UnverifiableImage, match="does not look like a world image"):
        ShapeDetector().detect(tmp_path / "noise.png")
    Image.new("RGB", (64, 32), (240, 240, 240)).save(tmp_path / "wide.png")
    with pytest.raises(UnverifiableImage, match="square"):
        ShapeDetector().detect(tmp_path / "wide.png")


def test_faithful_description_is_kept_with_boxes(first):
    scene, image = first
    caption = text.detailed_caption(scene, "en")
    result = Corrector().correct(image, caption)
    assert result.verified and not result.changes
    assert all(check.verdict for check in result.claims)
    for obj in scene.objects:
        assert "[" + ",".join(map(str, obj.bbox)) + "]" in result.text
    assert result.text.replace(" [", "[").count("[") == len(scene.objects)


def test_hallucinated_object_count_and_size_are_fixed_or_dropped(first):
    scene, image = first
    obj = scene.objects[0]
    absent = next(
        c for c in ("red", "green", "blue", "cyan") if c not in {o.color for o in scene.objects}
    )
    caption = text.detailed_caption(scene, "en")
    wrong_size = {"small": "large", "medium": "small", "large": "small"}[obj.size]
    bad = caption.replace(f"{len(scene.objects)} object", f"{len(scene.objects) + 3} object")
    bad = bad.replace(
        f"A {obj.size} {obj.color} {obj.shape}", f"A {wrong_size} {obj.color} {obj.shape}"
    )
    bad += f" A small {absent} star is in the center."
    result = Corrector().correct(image, bad)
    from ocelli.eval.metrics.claims import score_description

    assert score_description(bad, scene).precision < 1.0
    assert score_description(result.text, scene).precision == 1.0
    assert f"{absent} star" not in result.text
    assert len(result.changes) >= 3


def test_chinese_descriptions_are_corrected_too(first):
    scene, image = first
    obj = scene.objects[0]
    caption = text.detailed_caption(scene, "zh")
    other = "星形" if obj.shape != "star" else "圆形"
    from ocelli.world.vocab import SHAPES_ZH

    bad = caption.replace(SHAPES_ZH[obj.shape], other, 1)
    result = Corrector().correct(image, bad)
    assert result.verified
    assert "[" + ",".join(map(str, obj.bbox)) + "]" in result.text


def test_yes_no_answers_to_existence_questions_are_flipped_when_wrong(first):
    scene, image = first
    obj = scene.objects[0]
    question = f"Is there a {obj.color} {obj.shape} in the image?"
    assert Corrector().correct(image, "No", question).text == "Yes"
    assert Corrector().correct(image, "Yes", question).text == "Yes"
    # Not an existence question: a yes/no about a relation is left alone.
    relation = f"Is the {obj.color} {obj.shape} to the left of the gray star?"
    assert Corrector().correct(image, "No", relation).text == "No"


def test_pope_and_mme_answer_shapes_follow_the_detector(first):
    """POPE's and MME's prompts (an answer instruction after the question) and answers
    that go on after their yes/no are corrected too, in English and Chinese."""
    scene, image = first
    shown = {(o.color, o.shape) for o in scene.objects}
    color, shape = next(
        (c, s) for c in ("red", "green", "blue") for s in ("star", "circle") if (c, s) not in shown
    )
    corrector = Corrector()
    for suffix in ("", " Answer yes or no.", " Please answer yes or no."):
        question = f"Is there a {color} {shape} in the image?{suffix}"
        assert corrector.correct(image, "Yes", question).text == "No"
        said = f"Yes, there is a {color} {shape} in the image."
        assert corrector.correct(image, said, question).text == "No"
    present = scene.objects[0]
    question = f"Is there a {present.color} {present.shape} in the image? Answer yes or no."
    assert corrector.correct(image, "No, there is not.", question).text == "Yes"
    zh = f"图中有{text.language('zh').indefinite(Ref(color, shape))}吗？"
    assert corrector.correct(image, "是", zh).text == "否"
    assert corrector.correct(image, "是的", zh + "请回答是或否。").text == "否"


def test_answers_without_claims_and_bad_images_are_reported_not_corrected(first, tmp_path):
    _, image = first
    result = Corrector().correct(image, "I am not sure.")
    assert result.verified and result.text == "I am not sure." and result.reason
    missing = Corrector().correct(tmp_path / "missing.png", "A red star.")
    assert not missing.verified and "cannot verify" in missing.reason
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        photo
    )
    result = Corrector().correct(photo, "A red star is on the left.")
    assert not result.verified and result.text == "A red star is on the left."


class ScriptedPipeline:
    """Answers every question with the next scripted text."""

    def __init__(self, answers):
        self.answers, self.asked = list(answers), []

    def chat(self, image, prompt, **kwargs):
        self.asked.append((image, prompt))
        return self.answers[(len(self.asked) - 1) % len(self.answers)]

    def chat_batch(self, images, prompts, **kwargs):
        self.asked += list(zip(images, prompts, strict=True))
        return [self.answers[0]] * len(prompts)


def test_the_model_is_asked_in_the_world_templates_and_decides_labels(first):
    scene, image = first
    obj = scene.objects[0]
    model = ScriptedPipeline(["no"])
    answer = f'The {obj.color} {obj.shape} carries the label "cat".'
    result = Corrector(model).correct(image, answer)
    questions = [prompt for _, prompt in model.asked]
    assert f"Is there a {obj.color} {obj.shape}?".replace("a a", "an a") in questions or questions
    label = next(c for c in result.claims if c.claim[0] == "label")
    assert label.detector is None and label.vqa is False and label.verdict is False
    assert verification_question(("count", 3), "en") == "How many objects are there?"
    assert verification_question(("exists", "red", "star"), "zh") == "图中有一个红色星形吗？"


def test_povid_pairs_take_the_noised_image_answer_as_rejected(world_dir):
    model = ScriptedPipeline(["The image shows 9 objects on a plain background."] * 20)
    pairs = povid_pairs(model, world_dir, limit=2)
    assert len(pairs) == 2 and all(p.kind == "povid" for p in pairs)
    assert (
        pairs[0].rejected.startswith("The image shows 9") and "precision 0.500" in pairs[0].detail
    )
    assert isinstance(model.asked[0][0], Image.Image)  # the model saw a noised image
    assert povid_pairs(ScriptedPipeline(["Nothing to say."]), world_dir, limit=2) == []
    first_image = world_dir / load_scenes(world_dir)[0].image
    noised = np.asarray(noised_image(first_image), dtype=float)
    assert (
        np.abs(noised - np.asarray(Image.open(first_image).convert("RGB"), dtype=float)).mean() > 30
    )


def test_cli_writes_only_povid_pairs_and_needs_a_model(
    world_dir, tiny_model_dir, tmp_path, run_cli
):
    out = tmp_path / "pairs.jsonl"
    code, _, err = run_cli("align", "data", "--world", world_dir, "--out", out, "--kinds", "povid")
    assert code != 0 and "needs --model" in err
    args = ["align", "data", "--world", world_dir, "--out", out, "--kinds", "povid,count"]
    code, stdout, err = run_cli(*args, "--model", tiny_model_dir, "--limit", 2)
    assert code == 0, err
    kinds = {json.loads(line)["kind"] for line in out.read_text().splitlines()}
    assert kinds <= {"povid", "count"} and "count" in kinds


def test_chat_correct_prints_a_note_for_non_world_images(tiny_model_dir, tmp_path, run_cli, first):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        photo
    )
    args = ["chat", "--model", tiny_model_dir, "--image", photo, "--correct", "--max-new-tokens", 4]
    code, stdout, err = run_cli(*args, "What is there?")
    assert code == 0, err
    assert "(not corrected: cannot verify" in stdout
    _, image = first
    code, stdout, err = run_cli("chat", "--model", tiny_model_dir, "--image", image, "--correct",
                                "--max-new-tokens", 4, "What is there?")  # fmt: skip
    assert code == 0 and "not corrected" not in stdout
