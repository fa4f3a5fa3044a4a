"""What `lisa segment` writes: mask PNGs, an overlay with outlines, and result.json (COCO RLE)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180],
     [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128]],
    dtype=np.float32,
)


def draw_overlay(image: np.ndarray, masks: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """RGB uint8 [H, W, 3] + bool masks [N, H, W] -> tinted image with a 2-px outline per mask."""
    canvas = image.astype(np.float32)
    for index, mask in enumerate(masks):
        colour = PALETTE[index % len(PALETTE)]
        canvas[mask] = canvas[mask] * (1 - alpha) + colour * alpha
    result = canvas.round().clip(0, 255).astype(np.uint8)
    thickness = max(1, round(max(image.shape[:2]) / 256))
    for index, mask in enumerate(masks):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        colour = tuple(int(c) for c in PALETTE[index % len(PALETTE)])
        cv2.drawContours(result, contours, -1, colour, thickness)
    return result


def mask_record(mask: np.ndarray, score: float) -> dict:
    """Area, [x, y, w, h] bounding box, score and COCO compressed RLE of one bool mask."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    ys, xs = np.nonzero(mask)
    bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)] if len(xs) else [0, 0, 0, 0]
    return {
        "area": int(mask.sum()),
        "bbox": bbox,
        "score": round(float(score), 6),
        "rle": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
    }


def write_outputs(out_dir: Path, image: np.ndarray, query: str, text: str, masks: np.ndarray, scores: np.ndarray,
                  timings: dict[str, float], prompt: str | None = None) -> list[Path]:
    """mask_<i>.png, overlay.png and result.json; ``prompt`` is the text sent to the model when
    it differs from the query as typed (the segmentation wording added)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index, mask in enumerate(masks):
        path = out_dir / f"mask_{index}.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(path)
        written.append(path)
    overlay_path = out_dir / "overlay.png"
    Image.fromarray(draw_overlay(image, masks)).save(overlay_path)
    written.append(overlay_path)
    result = {
        "query": query,
        **({"prompt": prompt} if prompt is not None and prompt != query else {}),
        "text": text,
        "image_size": [int(image.shape[0]), int(image.shape[1])],
        "masks": [mask_record(m, s) for m, s in zip(masks, scores)],
        "timings_ms": timings,
    }
    result_path = out_dir / "result.json"
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    written.append(result_path)
    return written
