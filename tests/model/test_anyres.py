"""AnyRes: grid choice, token counts per aspect ratio, save/load, a train step and
generation, through the processor as training and generation use it."""

import numpy as np
import pytest
import torch
from PIL import Image

from ocelli.data.anyres import AnyResImageProcessor
from ocelli.data.processing import OcelliProcessor
from ocelli.data.tokenizer import train_tokenizer
from ocelli.errors import ConfigError
from ocelli.model import OcelliForConditionalGeneration
from ocelli.model.anyres import AnyResConfig

from .tiny import LANGUAGE_MODELS, VISION, make_model

# clip-tiny reads 32px images: tiles of 32px, grids 1x2, 2x1 and 2x2
ANYRES = {"grid_pinpoints": [[32, 64], [64, 32], [64, 64]]}
TOKENS_PER_TILE = 16  # mlp keeps clip-tiny's 4x4 features
# (width, height) -> grid, and its count: 16 (thumbnail) + rows*4 * (cols*4 + 1)
EXPECTED = {
    (120, 60): ((1, 2), 16 + 4 * 9),
    (60, 120): ((2, 1), 16 + 8 * 5),
    (90, 90): ((2, 2), 16 + 8 * 9),
    (200, 90): ((1, 2), 16 + 4 * 9),
    # wide, but a 1x2 grid would shrink it to 0.8x: 2x2 keeps every pixel
    (64, 40): ((2, 2), 16 + 8 * 9),
}
CORPUS = ["There is a red cube to the left of the blue sphere.", "How many? Two."] * 10


@pytest.mark.parametrize("size", list(EXPECTED))
def test_grid_and_token_count_follow_the_aspect_ratio(size):
    layout = AnyResConfig.from_dict(ANYRES)
    grid, count = EXPECTED[size]
    assert layout.select_grid(*size, tile_size=32) == grid
    assert layout.num_tokens(grid, TOKENS_PER_TILE) == count


def test_counts_without_thumbnail_or_newline_and_for_non_square_tiles():
    bare = AnyResConfig.from_dict({**ANYRES, "thumbnail": False, "newline": False})
    assert bare.num_tokens((2, 1), 16) == 2 * 16
    # 4 resampler queries per tile: a 2x2 map; 6 queries: one row of 6 per tile
    layout = AnyResConfig.from_dict(ANYRES)
    assert layout.num_tokens((1, 2), 4) == 4 + 2 * (2 * 2 + 1)
    assert layout.num_tokens((2, 2), 6) == 6 + 2 * (2 * 6 + 1)


def anyres_model(connector="mlp", **anyres):
    return make_model("clip-tiny", "llama-tiny", connector, anyres={**ANYRES, **anyres})


def picture(width, height, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.mark.parametrize("size", list(EXPECTED))
def test_model_fills_the_positions_the_processor_counts(size):
    model = anyres_model()
    processor = AnyResImageProcessor(size=32, anyres=ANYRES)
    pixels = processor([picture(*size)])
    assert pixels.shape == (1, 3, 64, 64)
    grid, count = EXPECTED[size]
    rows, cols = grid
    assert torch.isfinite(pixels[0, :, : rows * 32, : cols * 32]).all()
    assert torch.isnan(pixels).sum() == 3 * (64 * 64 - rows * cols * 32 * 32)
    assert model.image_token_counts(pixels) == [count]
    with torch.no_grad():
        features = model.get_image_features(pixels)
    assert features.shape == (count, model.config.text_config.hidden_size)
    assert torch.isfinite(features).all()
    # every row of the tile map ends with the learned newline
    row_length = cols * 4 + 1
    tiles = features[16:].reshape(rows * 4, row_length, -1)
    torch.testing.assert_close(tiles[:, -1], model.anyres.image_newline.expand(rows * 4, -1))


@pytest.mark.parametrize(
    ("connector", "anyres", "message"),
    [
        ("patches", ANYRES, "reads raw pixels"),
        ("xattn", ANYRES, "cannot take"),
        ("mlp", {"grid_pinpoints": [[32, 48]]}, "not multiples of"),
        ("mlp", {"grid_pinpoints": []}, "non-empty"),
        ("mlp", {"grid_pinpoints": [[32, 64]], "tiles": 2}, "unknown key"),
        ("mlp", {"newline": True}, "needs grid_pinpoints"),
    ],
)
def test_incompatible_combinations_fail_at_config_time(connector, anyres, message):
    with pytest.raises(ConfigError, match=message):
        make_model("clip-tiny", "llama-tiny", connector, anyres=anyres)


def test_saves_and_loads_with_its_newline(tmp_path):
    model = anyres_model()
    with torch.no_grad():
        model.anyres.image_newline.add_(1.0)
    model.save_pretrained(tmp_path)
    loaded = OcelliForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.config.anyres == {**ANYRES, "thumbnail": True, "newline": True}
    torch.testing.assert_close(loaded.anyres.image_newline, model.anyres.image_newline)
    pixels = AnyResImageProcessor(size=32, anyres=ANYRES)([picture(120, 60)])
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.get_image_features(pixels), model.get_image_features(pixels)
        )


@pytest.fixture(scope="module")
def model_and_processor():
    tokenizer = train_tokenizer(CORPUS, vocab_size=300)
    torch.manual_seed(0)
    model = OcelliForConditionalGeneration.from_components(
        "clip-tiny",
        "llama-tiny",
        "mlp",
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vocab_size=len(tokenizer),
        vision_overrides=VISION["clip-tiny"],
        language_model_overrides={**LANGUAGE_MODELS["llama-tiny"], "vocab_size": len(tokenizer)},
        anyres=ANYRES,
    )
    processor = OcelliProcessor.for_model(model, tokenizer)
    assert processor.anyres and processor.image_processor.anyres == model.config.anyres
    return model, processor


def test_a_train_step_reaches_the_newline_and_the_connector(model_and_processor, tmp_path):
    from ocelli.data import ConversationDataset, ConversationRecord, PadCollator

    model, processor = model_and_processor
    paths = []
    for index, size in enumerate([(120, 60), (60, 120), (90, 90)]):
        paths.append(tmp_path / f"{index}.png")
        picture(*size, seed=index).save(paths[-1])
    records = [
        ConversationRecord(
            id=str(index),
            messages=[
                {"role": "user", "content": "<image>\nHow many?"},
                {"role": "assistant", "content": "Two."},
            ],
            images=[path],
        )
        for index, path in enumerate(paths)
    ]
    dataset = ConversationDataset(records, processor)
    counts = [int((item["input_ids"] == processor.image_token_id).sum()) for item in dataset]
    assert counts == [52, 56, 88]
    batch = PadCollator(processor.pad_token_id)([dataset[i] for i in range(3)])
    model.train()
    model.zero_grad()
    loss = model(**batch).loss
    loss.backward()
    model.eval()
    assert torch.isfinite(loss)
    assert model.anyres.image_newline.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.connector.parameters())
    newline = model.anyres.image_newline
    assert any(param is newline for param in model.parameter_groups()["connector"])


def test_generation_batches_images_of_different_grids(model_and_processor, tmp_path):
    from ocelli.generate.pipeline import OcelliPipeline

    model, processor = model_and_processor
    pipeline = OcelliPipeline(model, processor)
    wide, tall = picture(120, 60, seed=1), picture(60, 120, seed=2)
    together = pipeline.chat_batch([[wide], [tall, wide]], ["How many?", "How many?"])
    alone = [pipeline.chat(wide, "How many?"), pipeline.chat([tall, wide], "How many?")]
    assert together == alone
    scores = pipeline.score_candidates(tall, "How many?", ["Two.", "red"])
    assert len(scores) == 2 and all(np.isfinite(scores))
    # beam search copies each sample's images with it
    beams = pipeline.chat_batch([[tall, wide], [wide]], ["How many?"] * 2, num_beams=2)
    assert len(beams) == 2

    processor.save_pretrained(tmp_path)
    reloaded = OcelliProcessor.from_pretrained(tmp_path)
    assert isinstance(reloaded.image_processor, AnyResImageProcessor)
    assert reloaded.image_processor.anyres == processor.image_processor.anyres


def test_eval_backend_answers_and_ranks(model_and_processor, tmp_path):
    from ocelli.eval.backends import LocalBackend, Request
    from ocelli.generate.pipeline import OcelliPipeline

    model, processor = model_and_processor
    pipeline = OcelliPipeline(model, processor)
    path = tmp_path / "wide.png"
    picture(120, 60, seed=4).save(path)
    backend = LocalBackend.from_pipeline(pipeline, tmp_path)
    answers = backend.generate([Request([str(path)], "How many?", 4)] * 2)
    assert answers == [pipeline.chat(path, "How many?", max_new_tokens=4)] * 2
    ranked = backend.rank([Request([str(path)], "How many?", 4, ["Two.", "red"])])
    assert not isinstance(ranked[0], Exception) and ranked[0][0] in ("Two.", "red")


def test_processor_without_sizes_says_what_to_pass(model_and_processor):
    _, processor = model_and_processor
    messages = [{"role": "user", "content": "<image> How many?"}]
    with pytest.raises(Exception, match="image_sizes"):
        processor.encode_prompt(messages, 1)
    assert (
        processor.encode_prompt(messages, 1, image_sizes=[(120, 60)])["input_ids"].count(
            processor.image_token_id
        )
        == 52
    )


def test_export_refuses_anyres(tmp_path):
    from ocelli.model import export_llava_hf

    with pytest.raises(ConfigError, match="AnyRes"):
        export_llava_hf(anyres_model(), tmp_path / "out")


def test_precomputed_vision_features_carry_their_grids(model_and_processor, tmp_path):
    """Frozen-tower training encodes each image once; its features keep the NaN slots."""
    from ocelli.train.features import calibrate_connector, precompute_vision_features

    model, processor = model_and_processor
    paths = []
    for index, size in enumerate([(120, 60), (90, 90)]):
        paths.append(str(tmp_path / f"{index}.png"))
        picture(*size, seed=index).save(paths[-1])
    features = precompute_vision_features(model, processor, paths, progress=False)
    assert features[paths[0]].shape[0] == 5  # thumbnail + 2x2 tile slots
    messages = [{"role": "user", "content": "<image> How many?"}]
    ids = [
        processor.encode_prompt(messages, 1, image_sizes=processor.image_sizes([path]))["input_ids"]
        for path in paths
    ]
    batch = processor.pad(ids)
    with torch.no_grad():
        from_pixels = model(**batch, pixel_values=processor.image_processor(paths)).logits
        from_features = model(
            **batch, vision_features=torch.stack([features[path] for path in paths])
        ).logits
    torch.testing.assert_close(from_features, from_pixels)
    calibrate_connector(model, processor, paths, features)
    assert torch.isfinite(model.connector.feature_mean).all()
    model.connector.feature_mean.zero_()
    model.connector.feature_std.fill_(1.0)
