"""Images sent inline as data URLs: checked before anything is decoded.

Order of checks, cheapest first: the media type, the encoded size, the base64, the
file's magic bytes (PNG, JPEG or WebP, whatever the media type claims), then the
pixel count from the header (`load_image`'s decompression-bomb guard) before decoding."""

from __future__ import annotations

import base64
import binascii

from PIL import Image

from ocelli.data.images import load_image
from ocelli.errors import ImageError
from ocelli.serve.errors import BadRequest, PayloadTooLarge

MEDIA_TYPES = ("image/png", "image/jpeg", "image/jpg", "image/webp")


def decode_data_url(url: str, max_bytes: int, param: str) -> bytes:
    """The bytes of a `data:image/...;base64,` URL, or a 400/413 naming `param`."""
    header, comma, payload = url[len("data:") :].partition(",")
    parts = [p.strip().lower() for p in header.split(";")]
    if not comma or "base64" not in parts[1:]:
        raise BadRequest(
            "image data URLs must look like data:image/png;base64,<data>",
            param,
            "invalid_image_url",
        )
    if parts[0] not in MEDIA_TYPES:
        raise BadRequest(
            f"unsupported image type {parts[0]!r}; send image/png, image/jpeg or image/webp",
            param,
            "unsupported_image_type",
        )
    # 4 base64 characters hold 3 bytes: refuse before decoding anything too big.
    if len(payload) // 4 * 3 > max_bytes:
        raise PayloadTooLarge(
            f"the image is about {len(payload) // 4 * 3:,} bytes, over the limit of "
            f"{max_bytes:,}; downscale or recompress it",
            param,
            "image_too_large",
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(
            "the image data is not valid base64; encode the file's bytes with standard base64",
            param,
            "invalid_base64",
        ) from None


def image_format(data: bytes) -> str | None:
    """PNG, JPEG or WEBP from the file's first bytes; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def open_image(data: bytes, max_pixels: int, param: str) -> Image.Image:
    """Decode PNG, JPEG or WebP bytes to RGB, refusing bombs before they are decoded."""
    if image_format(data) is None:
        raise BadRequest(
            "the data is not a PNG, JPEG or WebP image; send one of those formats",
            param,
            "invalid_image",
        )
    try:
        return load_image(data, max_pixels=max_pixels)
    except ImageError as exc:
        raise BadRequest(str(exc), param, "invalid_image") from None
