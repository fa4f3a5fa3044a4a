"""File formats: images, ReasonSeg-style polygon JSON, JSONL records with RLE targets.

Everything is written deterministically (fixed JPEG settings, sorted JSON keys) so that the
same seed gives byte-identical files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

JPEG_QUALITY = 95


def write_jpeg(path: Path, image: np.ndarray) -> None:
    # 4:4:4 chroma keeps the small coloured shapes crisp.
    Image.fromarray(image).save(path, format="JPEG", quality=JPEG_QUALITY, subsampling=0)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, sort_keys=True, indent=1) + "\n")


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w") as f:
        for record in records:
            f.write(json.dumps(record, sort_keys=True) + "\n")


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of a [H, W] bool mask: {"size": [h, w], "counts": str}."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def mask_to_polygons(mask: np.ndarray) -> list[list[list[int]]]:
    """Outer contours of a mask as [[x, y], ...] point lists (pixel centres)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).tolist() for c in contours]


def rasterize_reason_seg(shapes: list[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """Rasterise labelme shapes the way LISA's ReasonSeg tooling does: [H, W] uint8 in {0, 1, 255}.

    Polygons sorted by filled area, largest first; each drawn as an outline then filled.
    """
    canvas = np.zeros((height, width), dtype=np.uint8)
    polys = []
    for shape in shapes:
        if shape["label"] == "flag":
            continue
        pts = np.array(shape["points"], dtype=np.int32)
        alone = np.zeros((height, width), dtype=np.uint8)
        cv2.fillPoly(alone, [pts], 1)
        polys.append((int(alone.sum()), pts, 255 if "ignore" in shape["label"] else 1))
    for _, pts, value in sorted(polys, key=lambda p: p[0], reverse=True):
        cv2.polylines(canvas, [pts], True, value, 1)
        cv2.fillPoly(canvas, [pts], value)
    return canvas


def reason_seg_shapes(mask: np.ndarray) -> list[dict[str, Any]] | None:
    """Labelme "target" polygons that rasterise back to exactly ``mask``; None if impossible
    (a mask with a hole, or a contour the outline+fill rule cannot reproduce)."""
    shapes = [{"label": "target", "points": pts} for pts in mask_to_polygons(mask)]
    back = rasterize_reason_seg(shapes, *mask.shape)
    return shapes if np.array_equal(back.astype(bool), mask) else None
