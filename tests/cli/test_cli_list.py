"""`ocelli --version` and `ocelli list ...` print what is installed and registered."""

import pytest

import ocelli
from ocelli.cli import main
from ocelli.model import CONNECTORS, LANGUAGE_MODELS, VISION_ENCODERS
from ocelli.train.recipe import available_recipes


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"ocelli {ocelli.__version__}"


@pytest.mark.parametrize(
    ("what", "registry"),
    [
        ("connectors", CONNECTORS),
        ("encoders", VISION_ENCODERS),
        ("language-models", LANGUAGE_MODELS),
    ],
)
def test_list_prints_the_registered_names(cli, what, registry):
    result = cli("list", what)
    assert result.code == 0
    assert result.out.split() == registry.names()
    assert registry.names()  # the built-ins are registered on import


def test_list_recipes(cli):
    result = cli("list", "recipes")
    assert result.code == 0
    assert result.out.split() == available_recipes()
    assert {"quickstart", "base"} <= set(result.out.split())


def test_list_of_something_unknown_is_a_usage_error(cli, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli("list", "tokenizers")
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
