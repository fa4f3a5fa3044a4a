"""What both front ends send back: image bytes in, answer + COCO-RLE masks (+ overlay PNG) out."""

from __future__ import annotations

import base64
import binascii
import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from lisa.data.image_io import load_image
from lisa.errors import LisaError
from lisa.inference.pipeline import SegmentResult
from lisa.inference.render import draw_overlay, mask_records


class TooLarge(LisaError):
    """The input is above a configured size limit (HTTP 413)."""


def decode_base64(text: str, field: str = "image_base64") -> bytes:
    """Standard base64 (an optional ``data:image/...;base64,`` prefix is dropped)."""
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise LisaError(f"{field} is not valid base64: {error}") from None


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, WebP, ...) -> RGB uint8 [H, W, 3], refusing more than
    ``max_pixels`` before any pixel is decoded (the header gives the size)."""
    if not data:
        raise LisaError("the image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > max_pixels:
                raise TooLarge(f"the image is {image.width}x{image.height} = {image.width * image.height:,} pixels, "
                               f"above this server's limit of {max_pixels:,}; downscale it first")
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise TooLarge(f"the image is too large to decode safely: {error}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise LisaError(f"cannot read the image: {error}") from None
    return load_image(image, max_pixels=max_pixels)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def result_payload(image: np.ndarray, result: SegmentResult, overlay: bool) -> dict:
    """JSON-ready: answer text, one record per mask (area, [x, y, w, h] bbox, score, COCO RLE)."""
    payload = {
        "text": result.text,
        "image_size": [int(image.shape[0]), int(image.shape[1])],
        "masks": mask_records(result.masks, result.scores, result.present),
        "timings_ms": result.timings,
    }
    if overlay:
        payload["overlay_png_base64"] = base64.b64encode(png_bytes(draw_overlay(image, result.masks))).decode("ascii")
    return payload
