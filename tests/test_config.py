from dataclasses import dataclass, field

import pytest

from ocelli.config import apply_overrides, from_dict, load_yaml
from ocelli.errors import ConfigError


@dataclass
class Inner:
    lr: float = 1e-3
    steps: int = 10


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    tags: list[str] = field(default_factory=list)
    limit: int | None = None


def test_from_dict_builds_nested_dataclasses():
    config = from_dict(Outer, {"name": "run", "inner": {"lr": 2, "steps": 5}, "tags": ["a"]})
    assert config.inner.lr == 2.0 and isinstance(config.inner.lr, float)
    assert config.inner.steps == 5 and config.tags == ["a"] and config.limit is None


@pytest.mark.parametrize(
    "data, message",
    [
        ({"nmae": "typo"}, "unknown key(s) nmae"),
        ({"inner": {"stpes": 3}}, "config.inner: unknown key(s) stpes"),
        ({"inner": {"steps": "many"}}, "expected an integer"),
        ({"inner": {"steps": True}}, "expected an integer"),
        ({"tags": "a"}, "expected a list"),
        ({"inner": 3}, "expected a mapping"),
    ],
)
def test_from_dict_rejects_bad_input_with_the_key_named(data, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_dict(Outer, data)


def test_overrides_parse_values_as_yaml_and_create_sections():
    data = apply_overrides({"inner": {"lr": 1.0}}, ["inner.lr=3e-4", "inner.steps=7", "name=abc"])
    assert data == {"inner": {"lr": 3e-4, "steps": 7}, "name": "abc"}
    assert from_dict(Outer, data).inner.lr == pytest.approx(3e-4)


def test_override_without_equals_sign_is_an_error():
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["inner.lr"])


def test_load_yaml_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml is not valid YAML"):
        load_yaml(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_yaml(listing)


@pytest.mark.parametrize(
    "override",
    [
        "model.language_model_overrides={hidden_size:192, num_hidden_layers: 4}",
        "model.language_model_overrides={outer: {hidden_size:192}}",
        "world.items=[{a:1}]",
    ],
)
def test_an_override_with_a_colon_glued_to_its_value_names_the_fix(override):
    with pytest.raises(ConfigError, match="space after the colon"):
        apply_overrides({}, [override])


def test_keys_with_colons_and_values_are_kept():
    data = apply_overrides({}, ["a={'x:y': 1, b: {c: 2}}", "d=http://host:80"])
    assert data == {"a": {"x:y": 1, "b": {"c": 2}}, "d": "http://host:80"}
