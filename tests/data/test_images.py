import json
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from ocelli.data.images import ImageProcessor, load_image, to_rgb
from ocelli.errors import CheckpointError, ConfigError, ImageError


def _save(image, path, format="PNG", **options):
    image.save(path, format=format, **options)
    return path


def _pixel(image, x=0, y=0):
    return tuple(int(v) for v in np.asarray(image)[y, x])


def test_rgb_loads_from_path_bytes_and_pil(tmp_path):
    image = Image.new("RGB", (3, 2), (10, 20, 30))
    path = _save(image, tmp_path / "a.png")
    for source in (path, str(path), path.read_bytes(), image):
        loaded = load_image(source)
        assert loaded.mode == "RGB" and loaded.size == (3, 2) and _pixel(loaded) == (10, 20, 30)


def test_rgba_is_composited_on_white(tmp_path):
    image = Image.new("RGBA", (2, 1))
    image.putpixel((0, 0), (255, 0, 0, 128))
    image.putpixel((1, 0), (0, 0, 255, 0))
    loaded = load_image(_save(image, tmp_path / "a.png"))
    red, clear = _pixel(loaded, 0), _pixel(loaded, 1)
    assert red[0] == 255 and all(abs(v - 127) <= 1 for v in red[1:])
    assert clear == (255, 255, 255)


def test_grayscale_and_grayscale_alpha(tmp_path):
    assert _pixel(load_image(_save(Image.new("L", (1, 1), 77), tmp_path / "l.png"))) == (77, 77, 77)
    half_black = load_image(_save(Image.new("LA", (1, 1), (0, 128)), tmp_path / "la.png"))
    assert all(abs(v - 127) <= 1 for v in _pixel(half_black))
    assert _pixel(load_image(Image.new("1", (1, 1), 1))) == (255, 255, 255)


def test_palette_with_and_without_transparency(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([0, 200, 0, 10, 20, 30] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    opaque = load_image(_save(image, tmp_path / "p.png"))
    assert [_pixel(opaque, x) for x in (0, 1)] == [(0, 200, 0), (10, 20, 30)]
    transparent = load_image(_save(image, tmp_path / "pt.png", transparency=0))
    assert [_pixel(transparent, x) for x in (0, 1)] == [(255, 255, 255), (10, 20, 30)]
    assert _pixel(load_image(Image.new("PA", (1, 1), (0, 0)))) == (255, 255, 255)


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    values = np.array([[0, 1000, 32896, 65535]], dtype=np.uint16)
    loaded = load_image(_save(Image.fromarray(values), tmp_path / "16.png"))
    assert [_pixel(loaded, x)[0] for x in range(4)] == [0, 4, 128, 255]
    as_int32 = Image.fromarray(values.astype(np.int32))
    assert as_int32.mode == "I"
    assert [_pixel(to_rgb(as_int32), x)[0] for x in range(4)] == [0, 4, 128, 255]


def test_cmyk_jpeg(tmp_path):
    cyan = Image.new("CMYK", (8, 8), (255, 0, 0, 0))
    loaded = load_image(_save(cyan, tmp_path / "c.jpg", "JPEG", quality=100))
    red, green, blue = _pixel(loaded, 4, 4)
    assert red < 10 and green > 245 and blue > 245


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (4, 2), (1, 2, 3))
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90 degrees: stored landscape, shown portrait
    assert load_image(_save(image, tmp_path / "o.jpg", "JPEG", exif=exif)).size == (2, 4)


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ImageError, match=r"nope\.png not found; check the path"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)


def test_non_image_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is text")
    with pytest.raises(ImageError, match=r"notes\.png is not an image"):
        load_image(path)
    with pytest.raises(ImageError, match="from a int"):
        load_image(3)


@pytest.mark.parametrize("format", ["PNG", "JPEG"])
def test_truncated_file(tmp_path, format):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    whole = _save(Image.fromarray(noise), tmp_path / f"whole.{format.lower()}", format)
    cut = tmp_path / f"cut.{format.lower()}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ImageError, match=r"cut\.\w+ is corrupt or truncated"):
        load_image(cut)


def test_corrupt_data_after_a_valid_header(tmp_path):
    noise = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    data = bytearray(_save(Image.fromarray(noise), tmp_path / "a.png").read_bytes())
    data[60:200] = bytes(140)  # zero out the start of the compressed pixel data
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(bytes(data))


def _png_header_only(width, height):
    """A PNG claiming width x height pixels, with no pixel data: opening it costs nothing."""

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("side", [10_000, 20_000])  # over our limit; over Pillow's hard limit too
def test_decompression_bomb_is_refused(tmp_path, side):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(side, side))
    with pytest.raises(ImageError, match=r"bomb\.png .*(over the limit|too large)"):
        load_image(path)


def test_pixel_limit_is_configurable(tmp_path):
    path = _save(Image.new("RGB", (100, 100)), tmp_path / "a.png")
    with pytest.raises(ImageError, match=r"10,000 pixels, over the limit of 5,000"):
        load_image(path, max_pixels=5_000)
    assert load_image(path, max_pixels=None).size == (100, 100)


def test_processor_normalises_and_resizes(tmp_path):
    processor = ImageProcessor(size=(4, 6), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    white = Image.new("RGB", (10, 10), (255, 255, 255))
    black = _save(Image.new("L", (3, 3), 0), tmp_path / "black.png")
    pixels = processor([white, black])
    assert pixels.shape == (2, 3, 4, 6) and pixels.dtype == torch.float32
    assert torch.allclose(pixels[0], torch.ones(3, 4, 6))
    assert torch.allclose(pixels[1], -torch.ones(3, 4, 6))
    assert processor(white).shape == (1, 3, 4, 6)
    assert processor([]).shape == (0, 3, 4, 6)


def test_processor_channel_statistics():
    processor = ImageProcessor(size=2, mean=(0.0, 0.5, 1.0), std=(1.0, 0.5, 0.25), rescale=True)
    pixels = processor(Image.new("RGB", (2, 2), (255, 0, 51)))
    assert torch.allclose(pixels[0, :, 0, 0], torch.tensor([1.0, -1.0, (0.2 - 1.0) / 0.25]))


def test_processor_saves_and_loads_json(tmp_path):
    processor = ImageProcessor(size=32, resample="bilinear", mean=(0.1, 0.2, 0.3), std=(1, 2, 3))
    path = processor.save_pretrained(tmp_path)
    assert json.loads(path.read_text())["size"] == [32, 32]
    assert ImageProcessor.from_pretrained(tmp_path) == processor


def test_processor_reads_hugging_face_keys():
    hf = {
        "size": {"shortest_edge": 8},
        "image_mean": [0.4, 0.4, 0.4],
        "image_std": [0.2, 0.2, 0.2],
        "do_rescale": True,
        "resample": 3,
    }
    assert ImageProcessor.from_dict(hf) == ImageProcessor(8, "bicubic", (0.4,) * 3, (0.2,) * 3)


def test_processor_config_errors(tmp_path):
    with pytest.raises(CheckpointError, match="preprocessor_config.json not found"):
        ImageProcessor.from_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        ImageProcessor.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="resample"):
        ImageProcessor(resample="magic")
    with pytest.raises(ConfigError, match="std > 0"):
        ImageProcessor(std=(0, 1, 1))


def test_processor_errors_name_the_image(tmp_path):
    with pytest.raises(ImageError, match="missing.png"):
        ImageProcessor(size=4)([Image.new("RGB", (4, 4)), tmp_path / "missing.png"])
