"""WorldConfig checking, presets, YAML loading and the CLI command functions."""

from __future__ import annotations

import pytest

from ocelli.errors import ConfigError
from ocelli.world import (
    BASE_WORLD,
    QUICKSTART_WORLD,
    WorldConfig,
    generate_command,
    generate_dataset,
    load_meta,
    load_world_config,
    show_command,
    world_preset,
)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"shapes": ["circle", "blob"]}, "shapes: unknown name.*'blob'"),
        ({"colors": ["red", "mauve"]}, "colors: unknown name.*'mauve'"),
        ({"sizes": ["huge"]}, "sizes: unknown name"),
        ({"question_types": ["poetry"]}, "question_types: unknown name"),
        ({"langs": ["fr"]}, "langs: unknown name"),
        ({"colour": ["red"]}, "unknown key.*colour"),
        ({"min_objects": 4, "max_objects": 2}, "max_objects .* below min_objects"),
        ({"background": "stripes"}, "background"),
        ({"text_labels": 1.5}, "text_labels is a probability"),
        ({"image_size": 8}, "image_size must be between"),
        ({"cogent": "C"}, "cogent"),
    ],
)
def test_bad_config_is_a_config_error(data, message):
    with pytest.raises(ConfigError, match=message):
        WorldConfig.from_dict(data)


def test_presets():
    quick = QUICKSTART_WORLD.resolve()
    assert (quick.image_size, quick.min_objects, quick.max_objects) == (64, 1, 4)
    assert quick.text_labels == 0 and not quick.rotation and not quick.occlusion
    assert quick.background == "plain"
    assert BASE_WORLD.resolve().image_size == 96 and BASE_WORLD.text_labels > 0
    assert BASE_WORLD.occlusion and BASE_WORLD.rotation and BASE_WORLD.background == "noise"
    assert world_preset("quickstart", cogent="B").cogent == "B"
    with pytest.raises(ConfigError, match="unknown world preset"):
        world_preset("huge")


def test_mode_defaults():
    assert WorldConfig().resolve().image_size == 64
    soc = WorldConfig(mode="sort-of-clevr").resolve()
    assert soc.image_size == 75 and soc.questions_per_image == 20
    assert soc.question_types == ["non-relational", "relational"]


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "world.yaml"
    path.write_text("image_size: 48\nshapes: [circle, square]\nlangs: [en, zh]\n")
    config = load_world_config(str(path), ["max_objects=2", "background=texture"])
    assert (config.image_size, config.shapes, config.max_objects) == (48, ["circle", "square"], 2)
    assert config.background == "texture" and config.langs == ["en", "zh"]
    path.write_text("shapes: [circle, blob]\n")
    with pytest.raises(ConfigError, match=r"world\.yaml: shapes: unknown name"):
        load_world_config(str(path))


def test_cogent_without_colours_for_a_shape(tmp_path):
    config = WorldConfig(cogent="A", shapes=["square"], colors=["green", "orange"])
    with pytest.raises(ConfigError, match="leaves no colour for 'square'"):
        generate_dataset(tmp_path / "w", 1, seed=0, config=config, progress=False)


def test_generate_and_show_commands(tmp_path, capsys):
    out = tmp_path / "soc"
    generate_command(
        out,
        3,
        seed=2,
        split="val",
        mode="sort-of-clevr",
        langs="en,zh",
        overrides=["questions_per_image=20"],
        progress=False,
    )
    meta = load_meta(out)
    assert meta["split"] == "val" and meta["config"]["mode"] == "sort-of-clevr"
    assert meta["config"]["langs"] == ["en", "zh"] and meta["config"]["image_size"] == 75
    assert meta["counts"]["questions"] == 3 * 20 * 2
    show_command(out, tmp_path / "sheet.html", num_images=2)
    assert (tmp_path / "sheet.html").is_file()
    assert "wrote" in capsys.readouterr().err
