"""Polygon and RLE rasterisation shared by the loaders.

Two conventions live here, on purpose kept apart:

* ReasonSeg (labelme polygons, as the official ``utils/data_processing.py``): OpenCV closed 1-px outline plus fill,
  coordinates truncated to int32, polygons painted largest first so that smaller ones
  overwrite larger ones; ``ignore`` polygons paint 255, ``flag`` polygons are skipped.
* COCO (refCOCO family, PACO, users' JSONL): ``pycocotools`` polygons / RLE.

Every polygon and RLE is checked by ``lisa.data.validate`` before it reaches OpenCV or
pycocotools (NaN, huge coordinates and RLE counts not summing to h*w crash or corrupt them).
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import cv2
import numpy as np
from pycocotools import mask as coco_mask

from lisa.data.validate import check_coco_polygons, check_labelme_points, check_rle

IGNORE = 255


def _decode(rles: Any) -> np.ndarray:
    """pycocotools decode without its NumPy 2 ``copy=`` DeprecationWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return coco_mask.decode(rles)


def _cv_points(points: Sequence[Sequence[float]]) -> np.ndarray:
    """labelme points [[x, y], ...] -> int32 array [1, K, 2], truncated as the official tooling."""
    return np.array([points], dtype=np.int32)


def draw_polygon(canvas: np.ndarray, points: Sequence[Sequence[float]], value: int) -> None:
    """Paint one polygon in place: closed 1-px polyline plus fillPoly. canvas: [H, W] uint8."""
    pts = _cv_points(points)
    cv2.polylines(canvas, pts, True, int(value), 1)
    cv2.fillPoly(canvas, pts, int(value))


def reasonseg_mask(shapes: list[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """Rasterise ReasonSeg ``shapes`` into [H, W] uint8 with values {0, 1, 255}.

    Shapes whose label is exactly "flag" (any case) are skipped; labels containing "ignore"
    paint 255, every other label paints 1. Order: area descending (area of each polygon drawn
    alone), ties broken as ``np.argsort(areas)[::-1]`` does in the official code.
    """
    valid: list[dict[str, Any]] = []
    areas: list[int] = []
    for index, shape in enumerate(shapes):
        if str(shape["label"]).lower() == "flag":
            continue
        check_labelme_points(shape["points"], height, width, f"shapes[{index}].points")
        alone = np.zeros((height, width), dtype=np.uint8)
        draw_polygon(alone, shape["points"], 1)
        areas.append(int(alone.sum()))
        valid.append(shape)
    mask = np.zeros((height, width), dtype=np.uint8)
    for index in np.argsort(np.array(areas, dtype=np.int64))[::-1]:
        shape = valid[int(index)]
        value = IGNORE if "ignore" in str(shape["label"]).lower() else 1
        draw_polygon(mask, shape["points"], value)
    return mask


def coco_polygons_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """COCO polygons [[x1, y1, x2, y2, ...], ...] -> [H, W] uint8 union in {0, 1}.

    The official refer loader sums the parts (overlaps can give 2, defect 15); we take the union
    (merged as RLE, so many parts never cost one full mask each). Parts of fewer than 3 points are
    dropped, as pycocotools cannot draw them.
    """
    check_coco_polygons(polygons, height, width, min_points=0)
    parts = [[float(v) for v in p] for p in polygons if len(p) >= 6]
    if not parts:
        return np.zeros((height, width), dtype=np.uint8)
    rle = coco_mask.merge(coco_mask.frPyObjects(parts, height, width), intersect=0)
    return (_decode(rle) > 0).astype(np.uint8)


def coco_rle_mask(rle: dict[str, Any], height: int | None = None, width: int | None = None) -> np.ndarray:
    """COCO RLE (compressed ``counts`` str/bytes or uncompressed list) -> [H, W] uint8 {0, 1};
    ``RecordError`` (a ValueError) when it is malformed or not of the image's size."""
    size = list(check_rle(rle, height, width))
    counts = rle["counts"]
    if isinstance(counts, list):
        encoded = coco_mask.frPyObjects({"size": size, "counts": counts}, size[0], size[1])
    else:
        encoded = {"size": size, "counts": counts.encode() if isinstance(counts, str) else counts}
    return _decode(encoded).astype(np.uint8)


def segmentation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO annotation's ``segmentation`` (polygon list or RLE dict) -> [H, W] uint8 {0, 1}.

    Empty segmentations give an all-zero mask.
    """
    if isinstance(segmentation, dict):
        return coco_rle_mask(segmentation, height, width)
    if not segmentation:
        return np.zeros((height, width), dtype=np.uint8)
    return coco_polygons_mask(segmentation, height, width)
