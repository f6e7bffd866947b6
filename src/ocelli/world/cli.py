"""Command functions behind `ocelli world ...`: plain arguments in, files out.

The argparse wiring lives in ocelli.cli; these functions raise ConfigError or DataError
for anything a user can fix, which the CLI prints without a traceback.
"""

from __future__ import annotations

from pathlib import Path

from ocelli.world.config import load_world_config
from ocelli.world.contact_sheet import write_contact_sheet
from ocelli.world.dataset import generate_dataset


def generate_command(
    out: str | Path,
    num_images: int,
    seed: int = 0,
    split: str = "train",
    mode: str | None = None,
    langs: str | list[str] | None = None,
    image_size: int | None = None,
    config_path: str | None = None,
    overrides: list[str] | None = None,
    preset: str = "default",
    progress: bool = True,
) -> None:
    """Generate a world dataset into `out`.

    The config is the preset ("default", "quickstart" or "base"), updated by the YAML file
    at `config_path`, then by `mode`, `langs` ("en,zh" or a list) and `image_size` when
    given, then by `key=value` overrides. Prints a summary; returns nothing (the CLI
    exits 0).
    """
    explicit = []
    if mode is not None:
        explicit.append(f"mode={mode}")
    if langs is not None:
        names = langs.split(",") if isinstance(langs, str) else list(langs)
        explicit.append(f"langs=[{', '.join(n.strip() for n in names)}]")
    if image_size is not None:
        explicit.append(f"image_size={image_size}")
    config = load_world_config(config_path, explicit + list(overrides or []), preset=preset)
    meta = generate_dataset(out, num_images, seed, split=split, config=config, progress=progress)
    _print(
        f"wrote {meta['counts']['images']} images, {meta['counts']['questions']} questions "
        f"and {meta['counts']['conversations']} conversations to {out}"
    )


def show_command(data_dir: str | Path, out: str | Path | None = None, num_images: int = 16) -> None:
    """Write a contact sheet (HTML, or PNG for a .png path) of a world dataset."""
    path = write_contact_sheet(data_dir, out, num_images=num_images)
    _print(f"wrote {path}")


def _print(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(message, highlight=False)
