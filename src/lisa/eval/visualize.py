"""Side-by-side PNGs (image | target | prediction) for the worst cases."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from lisa.data.image_io import load_image

MAX_HEIGHT = 512
TARGET_COLOR = np.array([0, 200, 0], dtype=np.float32)
PRED_COLOR = np.array([220, 30, 30], dtype=np.float32)
IGNORE_COLOR = np.array([128, 128, 128], dtype=np.float32)


def overlay(image: np.ndarray, mask: np.ndarray, color: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Tint mask pixels (mask == 1 or True) of an [H, W, 3] uint8 image; 255 shown grey."""
    out = image.astype(np.float32)
    fg = mask == 1
    out[fg] = (1 - alpha) * out[fg] + alpha * color
    out[mask == 255] = (1 - alpha) * out[mask == 255] + alpha * IGNORE_COLOR
    return out.astype(np.uint8)


def side_by_side(image_path: Path, target: np.ndarray, pred: np.ndarray) -> Image.Image:
    """[image | target | prediction], scaled to at most MAX_HEIGHT pixels high."""
    image = load_image(image_path)  # the same upright RGB the model saw
    if image.shape[:2] != target.shape:
        image = np.array(Image.fromarray(image).resize(target.shape[::-1]))
    panels = [image, overlay(image, target, TARGET_COLOR), overlay(image, pred.astype(np.uint8), PRED_COLOR)]
    canvas = Image.fromarray(np.concatenate(panels, axis=1))
    if canvas.height > MAX_HEIGHT:
        canvas = canvas.resize((round(canvas.width * MAX_HEIGHT / canvas.height), MAX_HEIGHT), Image.BILINEAR)
    return canvas


def safe_name(item_id: str) -> str:
    """An item id usable as a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", item_id)


def write_case(out_dir: Path, rank: int, item_id: str, iou: float, image: Path,
               target: np.ndarray, pred: np.ndarray) -> Path:
    """Save one case as ``DIR/<rank>_<id>_iou<iou>.png``; returns the path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{rank:03d}_{safe_name(item_id)}_iou{iou:.3f}.png"
    side_by_side(image, target, pred).save(path)
    return path
