"""One validation of annotation geometry and mask files, shared by the loaders, `lisa eval` and
`lisa data check` (limits: docs/limits.md).

Everything here raises ``RecordError`` (a ``ValueError`` whose message does not repeat the file and
line) *before* a value reaches OpenCV or pycocotools: a NaN polygon makes pycocotools loop while
allocating without bound, a coordinate of 1e30 overflows into a segfault, and COCO RLE counts that
do not sum to h*w make its decoder read uninitialised memory or write past the mask.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

MAX_PIXELS = 100_000_000  # an image, mask or RLE of more pixels is refused (~10k x 10k, 100 MB as a mask)
MAX_POLYGON_POINTS = 100_000  # per polygon
MAX_POLYGONS = 10_000  # per target / annotation
MAX_RLE_COUNTS = 10_000_000  # runs in one RLE (a 10k x 10k checkerboard row pattern stays far below)


class RecordError(ValueError):
    """A problem with one record; the message does not repeat the file and line."""


def check_size(height: Any, width: Any, what: str = "size", max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """Positive integer (height, width) whose product is within the pixel limit."""
    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (height, width)):
        raise RecordError(f"{what} must be two integers [height, width], got {[height, width]!r}")
    height, width = int(height), int(width)
    if height <= 0 or width <= 0:
        raise RecordError(f"{what} [{height}, {width}] must be positive")
    if height * width > max_pixels:
        raise RecordError(f"{what} [{height}, {width}] is {height * width:,} pixels, above the limit of "
                          f"{max_pixels:,}")
    return height, width


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_coordinates(values: list[Any], height: int | None, width: int | None, what: str) -> None:
    """Finite numbers; with the image size, x in [-W, 2W] and y in [-H, 2H] (a point further than one
    image size outside the image is an annotation error, and such values are what overflow the rasterisers).

    ``values`` are flat [x1, y1, x2, y2, ...]."""
    if not all(_is_number(v) for v in values):
        raise RecordError(f"{what} must hold numbers only")
    array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise RecordError(f"{what} holds NaN or infinite coordinates")
    if height is None or width is None or not len(array):
        return
    xs, ys = array[0::2], array[1::2]
    if xs.min() < -width or xs.max() > 2 * width or ys.min() < -height or ys.max() > 2 * height:
        raise RecordError(f"{what} has coordinates far outside the {width}x{height} image "
                          f"(x in [{xs.min():g}, {xs.max():g}], y in [{ys.min():g}, {ys.max():g}])")


def check_coco_polygons(polygons: Any, height: int | None = None, width: int | None = None,
                        what: str = "polygons", min_points: int = 3) -> list[list[float]]:
    """COCO polygons [[x1, y1, x2, y2, ...], ...]: a list of flat lists of an even count of numbers,
    at least ``min_points`` points each (0 to accept degenerate parts, which the rasteriser drops)."""
    if not isinstance(polygons, list) or not polygons:
        raise RecordError(f"{what} must be a non-empty list of [x1, y1, x2, y2, x3, y3, ...] lists")
    if len(polygons) > MAX_POLYGONS:
        raise RecordError(f"{what} has {len(polygons):,} polygons, above the limit of {MAX_POLYGONS:,}")
    for index, polygon in enumerate(polygons):
        where = f"{what}[{index}]"
        if not isinstance(polygon, list) or len(polygon) % 2:
            raise RecordError(f"{where} must be a flat list [x1, y1, x2, y2, ...] of an even count of numbers")
        if len(polygon) < 2 * min_points:
            raise RecordError(f"{where} has {len(polygon) // 2} point(s); a polygon needs at least {min_points} points")
        if len(polygon) > 2 * MAX_POLYGON_POINTS:
            raise RecordError(f"{where} has {len(polygon) // 2:,} points, above the limit of {MAX_POLYGON_POINTS:,}")
        check_coordinates(polygon, height, width, where)
    return polygons


def check_labelme_points(points: Any, height: int | None, width: int | None, what: str = "points") -> None:
    """labelme points [[x, y], ...] (ReasonSeg): at least one finite point within the bound.

    Shapes of one or two points are kept: the official loader draws them (a dot or a line)."""
    if not isinstance(points, list) or not points or not all(isinstance(p, list) and len(p) == 2 for p in points):
        raise RecordError(f"{what} must be a non-empty list of [x, y] pairs")
    if len(points) > MAX_POLYGON_POINTS:
        raise RecordError(f"{what} has {len(points):,} points, above the limit of {MAX_POLYGON_POINTS:,}")
    check_coordinates([v for point in points for v in point], height, width, what)


def compressed_rle_counts(counts: str | bytes) -> list[int]:
    """The run lengths of a COCO compressed RLE string (the LEB128-like format of pycocotools'
    ``rleFrString``), decoded here so that a malformed string is refused instead of overrunning."""
    data = counts.encode("ascii", errors="replace") if isinstance(counts, str) else bytes(counts)
    runs: list[int] = []
    position = 0
    while position < len(data):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(data):
                raise RecordError("rle.counts is truncated (its last run is unfinished)")
            char = data[position] - 48
            if not 0 <= char < 64:
                raise RecordError(f"rle.counts has an invalid character {chr(data[position])!r} at {position}")
            value |= (char & 0x1F) << (5 * shift)
            more = bool(char & 0x20)
            position += 1
            shift += 1
            if shift > 7:
                raise RecordError("rle.counts holds a run longer than any image")
            if not more and char & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
        if len(runs) > MAX_RLE_COUNTS:
            raise RecordError(f"rle.counts has more than {MAX_RLE_COUNTS:,} runs")
    return runs


def check_rle(rle: Any, height: int | None = None, width: int | None = None, what: str = "rle") -> tuple[int, int]:
    """COCO RLE {'size': [h, w], 'counts': str | list[int]}: positive size within the pixel limit, equal
    to the image's when given; non-negative runs that sum to exactly h*w. Returns (h, w)."""
    if not isinstance(rle, dict) or set(rle) - {"size", "counts"} or "size" not in rle or "counts" not in rle:
        raise RecordError(f"{what} must be {{'size': [h, w], 'counts': str or list of ints}}")
    size = rle["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise RecordError(f"{what}.size must be [height, width]")
    rle_h, rle_w = check_size(size[0], size[1], f"{what}.size")
    if height is not None and width is not None and (rle_h, rle_w) != (height, width):
        raise RecordError(f"{what}.size [{rle_h}, {rle_w}] differs from the image size [{height}, {width}]")
    counts = rle["counts"]
    if isinstance(counts, list):
        if len(counts) > MAX_RLE_COUNTS:
            raise RecordError(f"{what}.counts has {len(counts):,} runs, above the limit of {MAX_RLE_COUNTS:,}")
        if not all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in counts):
            raise RecordError(f"{what}.counts must be a list of integers (or a compressed string)")
        runs = [int(c) for c in counts]
    elif isinstance(counts, (str, bytes)):
        runs = compressed_rle_counts(counts)
    else:
        raise RecordError(f"{what}.counts must be a compressed string or a list of integers")
    if any(run < 0 for run in runs):
        raise RecordError(f"{what}.counts holds a negative run length")
    total = sum(runs)
    if total != rle_h * rle_w:
        raise RecordError(f"{what}.counts sum to {total:,} pixels but size {rle_h}x{rle_w} needs {rle_h * rle_w:,}; "
                          "the RLE is corrupt or belongs to another image")
    return rle_h, rle_w


def inside_path(base: Path, relative: Any, root: Path, allow_outside: bool, what: str) -> Path:
    """``base / relative``, refused when absolute or when it leaves ``root`` through ``..``
    (unless ``allow_outside``). Checked on the written path, not through symlinks: a link the user
    made inside the data folder (e.g. to a shared image store) is theirs to make."""
    if not isinstance(relative, str) or not relative.strip():
        raise RecordError(f"{what} must be a non-empty path string")
    if "\x00" in relative:
        raise RecordError(f"{what} contains a NUL character")
    path = Path(relative)
    if allow_outside:
        return base / path
    if path.is_absolute():
        raise RecordError(f"{what} {relative!r} is an absolute path; paths must be relative to the data folder "
                          "(or pass --allow-outside-paths)")
    joined = Path(os.path.normpath(base / path))
    root = Path(os.path.normpath(root))
    if joined != root and root not in joined.parents:
        raise RecordError(f"{what} {relative!r} points outside the data folder {root} "
                          "(or pass --allow-outside-paths)")
    return base / path


def open_image_checked(path: Path, max_pixels: int = MAX_PIXELS, what: str = "image") -> Image.Image:
    """Open (not decode) an image file: refuses a missing file, a non-image and a decompression bomb."""
    if not path.is_file():
        raise RecordError(f"{what} {path} not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is checked below
            image = Image.open(path)
    except Image.DecompressionBombError:
        raise RecordError(f"{what} {path} declares more pixels than the limit of {max_pixels:,}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise RecordError(f"{what} {path} is not a readable image ({error})") from None
    if image.width * image.height > max_pixels or image.width <= 0 or image.height <= 0:
        image.close()
        raise RecordError(f"{what} {path} is {image.width}x{image.height}; images must have 1 to {max_pixels:,} pixels")
    return image


def image_hw(path: Path, max_pixels: int = MAX_PIXELS, what: str = "image") -> tuple[int, int]:
    """(height, width) of an image file as OpenCV's imread sees it (EXIF rotation applied), checked."""
    from lisa.data.images import image_size

    open_image_checked(path, max_pixels, what).close()
    return image_size(path)


def mask_foreground(array: np.ndarray, mode: str, name: object) -> np.ndarray:
    """[H, W] bool foreground of a decoded mask image: where the colour / luminance is nonzero.

    Alpha is not the mask: a fully opaque RGBA / LA mask is read by its colour. When the alpha
    plane varies it must agree with the colour (transparent pixels black, opaque ones not);
    otherwise the file is refused as ambiguous rather than guessed."""
    if array.ndim == 2:
        return array != 0
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa")
    colour = array[:, :, :-1] if has_alpha else array
    foreground = (colour != 0).any(axis=2)
    if has_alpha:
        alpha = array[:, :, -1]
        if alpha.min() != alpha.max() and not np.array_equal(foreground, alpha != 0):
            raise RecordError(f"mask {name} has an alpha channel that disagrees with its colour; save it as a "
                              "single-channel (L) PNG, foreground nonzero")
    return foreground


def read_mask_file(path: Path, height: int | None = None, width: int | None = None,
                   max_pixels: int = MAX_PIXELS, what: str = "mask") -> np.ndarray:
    """A mask image -> [H, W] bool (nonzero colour = foreground, see ``mask_foreground``),
    checked to be an image within the pixel limit and, when given, of the image's size."""
    image = open_image_checked(path, max_pixels, what)
    try:
        with image:
            if (height, width) != (None, None) and (image.height, image.width) != (height, width):
                raise RecordError(f"{what} {path} is {image.width}x{image.height} but the image is {width}x{height}")
            mode = image.mode
            array = np.asarray(image)
    except RecordError:
        raise
    except (OSError, SyntaxError, ValueError) as error:
        raise RecordError(f"{what} {path} cannot be decoded ({error})") from None
    return mask_foreground(array, mode, path)
