"""A page to look at a world dataset: images with their captions, questions and answers.

HTML (images embedded as base64, so the page is one self-contained file) or a PNG grid
when the output path ends in .png.
"""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ocelli.errors import DataError
from ocelli.utils import atomic_write_bytes, atomic_write_text
from ocelli.world.loading import load_captions, load_questions, load_scenes
from ocelli.world.render import png_bytes

HTML_IMAGE_WIDTH = 192
PNG_TILE_WIDTH = 256
PNG_TEXT_LINES = 5
PNG_COLUMNS = 4


def write_contact_sheet(
    data_dir: str | Path,
    out_path: str | Path | None = None,
    num_images: int = 16,
    questions_per_image: int = 6,
) -> Path:
    """Write a contact sheet of the first `num_images` images; returns its path.

    `out_path` defaults to <data_dir>/contact_sheet.html; a .png suffix gives a grid
    image instead (English text only: the embedded font has no Chinese glyphs).
    """
    if num_images <= 0:
        raise DataError(f"num_images must be positive, got {num_images}")
    data_dir = Path(data_dir)
    out_path = Path(out_path) if out_path is not None else data_dir / "contact_sheet.html"
    scenes = load_scenes(data_dir)[:num_images]
    questions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in load_questions(data_dir):
        questions[item["image_id"]].append(item)
    captions: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for caption in load_captions(data_dir):
        captions[caption["image"]].append(caption)
    cards = []
    for scene in scenes:
        image_path = data_dir / scene.image
        if not image_path.is_file():
            raise DataError(f"{image_path}: image of scene {scene.id} is missing")
        cards.append(
            {
                "id": scene.id,
                "png": image_path.read_bytes(),
                "captions": captions[scene.image],
                "questions": _first_per_lang(questions[scene.id], questions_per_image),
                "num_objects": len(scene.objects),
            }
        )
    if out_path.suffix.lower() == ".png":
        atomic_write_bytes(out_path, png_bytes(_grid(cards)))
    else:
        atomic_write_text(out_path, _html_page(data_dir, cards))
    return out_path


def _first_per_lang(items: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    taken: dict[str, int] = defaultdict(int)
    chosen = []
    for item in items:
        if taken[item["lang"]] < limit:
            taken[item["lang"]] += 1
            chosen.append(item)
    return chosen


def _html_page(data_dir: Path, cards: list[dict[str, Any]]) -> str:
    body = "\n".join(_html_card(card) for card in cards)
    title = html.escape(f"ocelli world: {data_dir}")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; background: #fafafa; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 12px; }}
.card {{ width: 360px; background: white; border: 1px solid #ddd; padding: 8px; }}
.card img {{ width: {HTML_IMAGE_WIDTH}px; image-rendering: pixelated; border: 1px solid #ccc; }}
.caption {{ font-size: 13px; color: #333; margin: 4px 0; }}
.qa {{ font-size: 12px; margin: 2px 0; }}
.answer {{ font-weight: bold; color: #0a5; }}
.meta {{ font-size: 11px; color: #888; }}
</style></head>
<body><h1>{title}</h1><div class="grid">
{body}
</div></body></html>
"""


def _html_card(card: dict[str, Any]) -> str:
    encoded = base64.b64encode(card["png"]).decode("ascii")
    lines = [
        f'<div class="card"><div class="meta">{html.escape(card["id"])} '
        f"({card['num_objects']} objects)</div>",
        f'<img src="data:image/png;base64,{encoded}" alt="{html.escape(card["id"])}">',
    ]
    for caption in card["captions"]:
        lines.append(
            f'<div class="caption">[{caption["lang"]}] {html.escape(caption["detailed"])}</div>'
        )
    for item in card["questions"]:
        kind = html.escape(f"{item['type']}/{item['subtype']}")
        lines.append(
            f'<div class="qa"><span class="meta">{kind}</span> {html.escape(item["question"])} '
            f'<span class="answer">{html.escape(item["answer"])}</span></div>'
        )
    lines.append("</div>")
    return "\n".join(lines)


def _grid(cards: list[dict[str, Any]]) -> Image.Image:
    font = ImageFont.load_default(size=11)
    line_height = 14
    image_side = PNG_TILE_WIDTH // 2
    tile_height = image_side + 8 + PNG_TEXT_LINES * line_height
    rows = (len(cards) + PNG_COLUMNS - 1) // PNG_COLUMNS
    sheet = Image.new("RGB", (PNG_COLUMNS * PNG_TILE_WIDTH, rows * tile_height), "white")
    draw = ImageDraw.Draw(sheet)
    for index, card in enumerate(cards):
        left = (index % PNG_COLUMNS) * PNG_TILE_WIDTH
        top = (index // PNG_COLUMNS) * tile_height
        with Image.open(io.BytesIO(card["png"])) as image:
            tile = image.convert("RGB").resize((image_side, image_side), Image.Resampling.NEAREST)
        sheet.paste(tile, (left + 4, top + 4))
        english = [q for q in card["questions"] if q["lang"] == "en"][:PNG_TEXT_LINES]
        for line_no, item in enumerate(english):
            y = top + image_side + 8 + line_no * line_height
            answer = f" {item.get('short_answer', item['answer'])}"
            answer_width = draw.textlength(answer, font=font)
            question = _fit(draw, item["question"], font, PNG_TILE_WIDTH - 8 - answer_width)
            draw.text((left + 4, y), question, font=font, fill=(0, 0, 0))
            draw.text(
                (left + 4 + draw.textlength(question, font=font), y),
                answer,
                font=font,
                fill=(0, 140, 70),
            )
    return sheet


def _fit(draw: ImageDraw.ImageDraw, line: str, font, width: float) -> str:
    if draw.textlength(line, font=font) <= width:
        return line
    while line and draw.textlength(line + "...", font=font) > width:
        line = line[:-1]
    return line + "..."
