"""Read any user image into one canonical form: an RGB uint8 array [H, W, 3], upright.

Handles paths, PIL images and numpy arrays; EXIF orientation; RGBA / LA / palette
transparency (composited on white, as a viewer shows it); grayscale; 16-bit and float
images; and refuses corrupt or absurdly large files with a clear message.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lisa.errors import LisaError

ImageInput = Union[str, Path, Image.Image, np.ndarray]
MAX_PIXELS = 100_000_000  # ~10k x 10k; larger inputs are refused instead of exhausting memory


def load_image(image: ImageInput, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Return an RGB uint8 array [H, W, 3]."""
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image, max_pixels)
    if isinstance(image, (str, Path)):
        return _pil_to_rgb(_open(Path(image), max_pixels), max_pixels)
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image, max_pixels)
    raise LisaError(f"unsupported image type {type(image).__name__}: give a path, a PIL image or a numpy array")


def _open(path: Path, max_pixels: int) -> Image.Image:
    if not path.is_file():
        raise LisaError(f"image not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            _check_size(image.width, image.height, max_pixels, path)
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise LisaError(f"cannot read image {path}: {error}") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise LisaError(f"image {path} is too large to process safely: {error}") from error
    return image


def _check_size(width: int, height: int, max_pixels: int, name: object) -> None:
    if width * height > max_pixels:
        raise LisaError(
            f"image {name} is {width}x{height} = {width * height:,} pixels, above the limit of "
            f"{max_pixels:,}; downscale it first"
        )
    if width == 0 or height == 0:
        raise LisaError(f"image {name} is empty ({width}x{height})")


def _pil_to_rgb(image: Image.Image, max_pixels: int) -> np.ndarray:
    _check_size(image.width, image.height, max_pixels, "input")
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _array_to_rgb(np.asarray(image), max_pixels)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _array_to_rgb(array: np.ndarray, max_pixels: int) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise LisaError(f"expected an image array [H, W], [H, W, 3] or [H, W, 4], got {array.shape}")
    _check_size(array.shape[1], array.shape[0], max_pixels, "array")
    array = _to_uint8(array)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.shape[2] == 4:
        alpha = array[:, :, 3:4].astype(np.float32) / 255.0
        array = (array[:, :, :3] * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(array)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise LisaError("image array contains NaN or infinity")
        scale = 255.0 if array.max(initial=0) <= 1.0 else 1.0
        return np.clip(array * scale, 0, 255).round().astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        # 16-bit data keeps its full range; wider ints (PIL mode "I") are judged by their values.
        sixteen_bit = array.dtype in (np.uint16, np.int16) or array.max(initial=0) > 255
        peak = 65535 if sixteen_bit else 255
        return np.clip(array.astype(np.float64) * (255.0 / peak), 0, 255).round().astype(np.uint8)
    raise LisaError(f"unsupported image dtype {array.dtype}")
