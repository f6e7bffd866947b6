"""Image loading and preprocessing: any image a user may hand us, as model-ready pixels.

`load_image` turns a path, raw bytes or a PIL image into an RGB PIL image, converting
every mode Pillow opens (transparent images are composited on white, 16-bit images
are scaled, not clipped) and refusing files that are missing, corrupt, truncated or so
large they would exhaust memory. `ImageProcessor` resizes and normalises a batch into
a (B, 3, H, W) float tensor with Pillow and numpy, and saves as
`preprocessor_config.json`.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ocelli.errors import CheckpointError, ConfigError, ImageError
from ocelli.utils.io import atomic_write_json, read_json_object

ImageInput = str | os.PathLike | bytes | Image.Image

# 40 megapixels holds any photo or scan a VLM will see (a 6000x6000 image is 36 MP) while
# keeping a malicious "decompression bomb" from allocating gigabytes.
DEFAULT_MAX_PIXELS = 40_000_000
PREPROCESSOR_CONFIG = "preprocessor_config.json"
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
_EXIF_ORIENTATION = 0x0112
# How to undo each EXIF orientation, so phone photos are seen upright.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def load_image(source: ImageInput, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open `source` (a path, encoded bytes or a PIL image) as an RGB image.

    Raises ImageError, naming the input, when it is missing, not an image, corrupt or
    truncated, or has more than `max_pixels` pixels (None: only Pillow's own limit).
    """
    if isinstance(source, Image.Image):
        return _decoded_rgb(source, "the PIL image", max_pixels)
    if isinstance(source, (bytes, bytearray)):
        return _open(io.BytesIO(source), f"the {len(source)} bytes of image data", max_pixels)
    if not isinstance(source, (str, os.PathLike)):
        raise ImageError(
            f"cannot load an image from a {type(source).__name__}; give a file path, bytes or a PIL image"
        )
    path = Path(source)
    if not path.is_file():
        what = "is a directory, not an image file" if path.is_dir() else "not found"
        raise ImageError(f"image file {path} {what}; check the path")
    with open(path, "rb") as handle:
        return _open(handle, f"image file {path}", max_pixels)


def _open(stream: Any, name: str, max_pixels: int | None) -> Image.Image:
    try:
        # Pillow's bomb check only warns below twice its limit; ours is the one that counts.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream)
    except UnidentifiedImageError:
        raise ImageError(
            f"{name} is not an image Pillow can read; give a PNG, JPEG, WebP, GIF, BMP or TIFF file"
        ) from None
    except Image.DecompressionBombError as exc:
        raise ImageError(
            f"{name} is too large to load safely ({exc}); downscale it first"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(
            f"{name} could not be opened ({exc}); re-export or re-download it"
        ) from None
    with image:
        return _decoded_rgb(image, name, max_pixels)


def _decoded_rgb(image: Image.Image, name: str, max_pixels: int | None) -> Image.Image:
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{name} is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{max_pixels:,} (a guard against decompression bombs); downscale it or raise max_pixels"
        )
    try:
        image.load()  # decoding happens here, so this is where corrupt data shows up
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(
            f"{name} is corrupt or truncated ({exc}); re-export or re-download it"
        ) from None
    try:
        rgb = to_rgb(image)
    except (ValueError, OSError) as exc:
        raise ImageError(
            f"{name} has Pillow mode {image.mode!r}, which ocelli cannot convert to RGB ({exc}); "
            "save it as an RGB PNG or JPEG"
        ) from None
    upright = _UPRIGHT.get(orientation)
    if upright is not None:
        rgb = rgb.transpose(upright)
    # A copy outlives the file it came from, which the caller's `with` block closes.
    return rgb.copy() if rgb is image else rgb


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: alpha composited on white, 16-bit scaled to 8-bit."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # Pillow's own conversion clips 16-bit values at 255 instead of scaling them.
        # Mode "I" is read as 16-bit data too: that is how Pillow opens 16-bit files.
        values = np.asarray(image).astype(np.float64)
        scaled = np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L").convert("RGB")
    has_alpha = "A" in image.getbands() or "a" in image.getbands() or "transparency" in image.info
    if has_alpha:
        # Premultiplied "La" has no direct route to RGBA; "LA" does.
        rgba = (image.convert("LA") if mode == "La" else image).convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "F":
        return image.convert("L").convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _as_pair(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ConfigError(f"image size must be a positive int or (height, width), got {size!r}")
    return pair  # type: ignore[return-value]


@dataclass
class ImageProcessor:
    """Resize to `size` (an int or (height, width)), scale to [0, 1] when `rescale`, then
    normalise with `mean`/`std` per channel. Aspect ratio is not kept: the world's
    images are square, and padding would spend image tokens on blank borders."""

    size: int | tuple[int, int] = 224
    resample: str = "bicubic"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    rescale: bool = True
    max_pixels: int | None = field(default=DEFAULT_MAX_PIXELS)

    def __post_init__(self) -> None:
        self.size = _as_pair(self.size)
        if self.resample not in RESAMPLE:
            raise ConfigError(
                f"resample {self.resample!r} is unknown; use one of {', '.join(RESAMPLE)}"
            )
        self.mean, self.std = tuple(map(float, self.mean)), tuple(map(float, self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or not all(s > 0 for s in self.std):
            raise ConfigError(
                f"mean and std need 3 values each, std > 0; got {self.mean}, {self.std}"
            )

    def __call__(self, images: ImageInput | list[ImageInput]) -> torch.FloatTensor:
        """Preprocess one image or a list of them into a (B, 3, H, W) float32 tensor."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        height, width = self.size
        if not images:
            return torch.empty((0, 3, height, width), dtype=torch.float32)
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        arrays = []
        for image in images:
            rgb = load_image(image, self.max_pixels)
            if rgb.size != (width, height):
                rgb = rgb.resize((width, height), RESAMPLE[self.resample])
            pixels = np.asarray(rgb, dtype=np.float32)
            if self.rescale:
                pixels = pixels / 255.0
            arrays.append(((pixels - mean) / std).transpose(2, 0, 1))
        return torch.from_numpy(np.stack(arrays))

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_processor_type": "OcelliImageProcessor",
            **asdict(self),
            "size": list(self.size),
        }

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        path = Path(directory) / PREPROCESSOR_CONFIG
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> ImageProcessor:
        """Build from ocelli's keys, or from a Hugging Face image processor's
        (`image_mean`, `image_std`, `do_rescale`, `size` as a dict, `resample` as an int)."""
        config = dict(config)
        if cls is ImageProcessor and config.get("anyres"):
            from ocelli.data.anyres import AnyResImageProcessor  # it subclasses this one

            return AnyResImageProcessor.from_dict(config)
        hf_keys = {"image_mean": "mean", "image_std": "std", "do_rescale": "rescale"}
        for hf_key, key in hf_keys.items():
            if hf_key in config:
                config.setdefault(key, config[hf_key])
        size = config.get("size")
        if isinstance(size, dict):
            edge = size.get("shortest_edge")
            config["size"] = (edge, edge) if edge else (size.get("height"), size.get("width"))
        if isinstance(config.get("resample"), int):
            names = {int(value): name for name, value in RESAMPLE.items()}
            config["resample"] = names.get(config["resample"], "bicubic")
        fields = {"size", "resample", "mean", "std", "rescale", "max_pixels", "anyres"}
        if cls is ImageProcessor:
            fields.discard("anyres")
        return cls(**{key: value for key, value in config.items() if key in fields})

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> ImageProcessor:
        """Load `preprocessor_config.json` from a directory (or the JSON file itself)."""
        path = Path(directory)
        if path.is_dir():
            path = path / PREPROCESSOR_CONFIG
        if not path.is_file():
            raise CheckpointError(
                f"{path} not found; save an image processor there with ImageProcessor.save_pretrained()"
            )
        config = read_json_object(path, "re-save the processor")
        try:
            return cls.from_dict(config)
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(f"{path} holds an invalid image processor: {exc}") from None
