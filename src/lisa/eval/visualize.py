"""Side-by-side PNGs (image | target | prediction) for the worst cases, captioned with the
query, the model's answer and the IoU."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from lisa.data.image_io import load_image
from lisa.inference.render import draw_overlay, enlarge, stack, text_band

MAX_HEIGHT = 512
MIN_PANEL_HEIGHT = 256  # smaller images are enlarged (whole-pixel factor)
TARGET_COLOR = np.array([0, 200, 0], dtype=np.float32)
PRED_COLOR = np.array([220, 30, 30], dtype=np.float32)
IGNORE_COLOR = np.array([128, 128, 128], dtype=np.float32)


def overlay(image: np.ndarray, mask: np.ndarray, color: np.ndarray) -> np.ndarray:
    """Fill and outline mask pixels (mask == 1 or True) of an [H, W, 3] uint8 image in ``color``,
    dimming the rest; ignored pixels (255) are shown grey."""
    out = draw_overlay(image, (mask == 1)[None], palette=color[None], dim_rest=True)
    ignored = mask == 255
    out[ignored] = (0.5 * out[ignored] + 0.5 * IGNORE_COLOR).astype(np.uint8)
    return out


def side_by_side(image_path: Path, target: np.ndarray, pred: np.ndarray, query: str = "",
                 answer: str | None = None, iou: float | None = None) -> Image.Image:
    """[image | target | prediction], small images enlarged and large ones scaled to at most
    MAX_HEIGHT pixels high, above a caption with the query, the answer and the IoU."""
    image = load_image(image_path)  # the same upright RGB the model saw
    if image.shape[:2] != target.shape:
        image = np.array(Image.fromarray(image).resize(target.shape[::-1]))
    factor = max(1, -(-MIN_PANEL_HEIGHT // image.shape[0]))
    image, target, pred = (enlarge(a, factor) for a in (image, target, pred.astype(np.uint8)))
    gap = np.full((image.shape[0], 6, 3), 255, np.uint8)
    panels = [image, gap, overlay(image, target, TARGET_COLOR), gap, overlay(image, pred, PRED_COLOR)]
    canvas = Image.fromarray(np.concatenate(panels, axis=1))
    if canvas.height > MAX_HEIGHT:
        canvas = canvas.resize((round(canvas.width * MAX_HEIGHT / canvas.height), MAX_HEIGHT), Image.BILINEAR)
    rows = [("input  |  target (green)  |  prediction (red)" + ("" if iou is None else f"  |  IoU {iou:.3f}"), None),
            (f"Q: {query}", None)]
    if answer is not None:
        rows.append((f"A: {answer}", None))
    return stack(canvas, text_band(max(canvas.width, 480), rows, size=14))


def safe_name(item_id: str) -> str:
    """An item id usable as a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", item_id)


def write_case(out_dir: Path, rank: int, item_id: str, iou: float, image: Path,
               target: np.ndarray, pred: np.ndarray, query: str = "", answer: str | None = None) -> Path:
    """Save one case as ``DIR/<rank>_<id>_iou<iou>.png``; returns the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{rank:03d}_{safe_name(item_id)}_iou{iou:.3f}.png"
    side_by_side(image, target, pred, query, answer, iou).save(path)
    return path
