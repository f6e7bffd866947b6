"""`ocelli serve` flags: limits and keys reach the ServeConfig; mistakes are one-line errors."""

from __future__ import annotations

from ocelli.cli import build_parser, main
from ocelli.serve.cli import config_from_args


def test_flags_become_the_config(monkeypatch, tmp_path):
    monkeypatch.setenv("OCELLI_API_KEY", "from-env, second")
    args = build_parser().parse_args(
        [
            "serve",
            "--model",
            str(tmp_path / "my-model"),
            "--api-key",
            "k1",
            "--port",
            "9001",
            "--max-batch-size",
            "4",
            "--max-images-per-request",
            "2",
            "--allow-image-urls",
            "--image-url-host",
            "*.example.com",
        ]
    )
    config = config_from_args(args)
    assert config.api_keys == ("k1", "from-env", "second")
    assert (config.port, config.max_batch_size, config.max_images_per_request) == (9001, 4, 2)
    assert config.served_model_name == "my-model"
    assert config.image_url_hosts == ("*.example.com",)
    assert "api_keys" not in config.summary()


def test_mistakes_are_errors_without_a_traceback(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    assert "error: model directory" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path), "--allow-image-urls"]) == 2
    assert "--image-url-host" in capsys.readouterr().err
