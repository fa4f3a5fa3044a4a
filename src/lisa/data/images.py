"""Image facts the loaders need without decoding whole images."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

# EXIF orientations that swap width and height (OpenCV's imread applies them, as the
# official loaders do via cv2.imread, so annotation sizes refer to the rotated image).
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}
_ORIENTATION_TAG = 0x0112


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image as OpenCV's ``imread`` would return it (EXIF applied)."""
    with Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(_ORIENTATION_TAG, 1)
    if orientation in _TRANSPOSING_ORIENTATIONS:
        return width, height
    return height, width
