"""What `lisa segment` writes: mask PNGs, an overlay with a legend, and result.json (COCO RLE)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pycocotools import mask as mask_utils

# Strong, distinct colours (one per mask, in answer order); masks beyond ten reuse them.
PALETTE = np.array(
    [[230, 25, 75], [0, 130, 200], [60, 180, 75], [245, 130, 48], [145, 30, 180],
     [70, 240, 240], [240, 50, 230], [210, 245, 60], [0, 128, 128], [170, 110, 40]],
    dtype=np.float32,
)
MIN_VIEW_SIDE = 512  # smaller images are enlarged (whole-pixel factor) so that masks are easy to see
LEGEND_WIDTH = 512  # the legend band is at least this wide


def view_scale(height: int, width: int) -> int:
    """Whole-number enlargement that brings the longer side to at least MIN_VIEW_SIDE."""
    return max(1, -(-MIN_VIEW_SIDE // max(height, width, 1)))


def enlarge(array: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of [H, W, ...] by a whole factor (pixels stay square and masks aligned)."""
    return array if factor == 1 else array.repeat(factor, axis=0).repeat(factor, axis=1)


def draw_overlay(image: np.ndarray, masks: np.ndarray, alpha: float = 0.65,
                 palette: np.ndarray = PALETTE, dim_rest: bool = False) -> np.ndarray:
    """RGB uint8 [H, W, 3] + bool masks [N, H, W] -> the image with each mask filled in its colour
    (``palette`` row i for mask i) and outlined (white, then the colour); ``dim_rest`` darkens
    everything outside the masks so that they stand out (the pictures made for people)."""
    canvas = image.astype(np.float32)
    if len(masks) and dim_rest:
        anywhere = masks.any(0)
        canvas[~anywhere] = canvas[~anywhere] * 0.45 + 255 * 0.1
    for index, mask in enumerate(masks):
        colour = palette[index % len(palette)]
        canvas[mask] = canvas[mask] * (1 - alpha) + colour * alpha
    result = canvas.round().clip(0, 255).astype(np.uint8)
    thickness = max(2, round(max(image.shape[:2]) / 160))
    for index, mask in enumerate(masks):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        colour = tuple(int(c) for c in palette[index % len(palette)])
        cv2.drawContours(result, contours, -1, (255, 255, 255), thickness + 2)
        cv2.drawContours(result, contours, -1, colour, thickness)
    return result


def font(size: int) -> ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` pixels (its small bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def wrap(text: str, face: ImageFont.ImageFont, width: float) -> list[str]:
    """Greedy word wrap to ``width`` pixels in ``face`` (a word longer than a line gets one of its own)."""
    lines: list[str] = []
    for word in text.split():
        if lines and face.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def text_band(width: int, rows: list[tuple[str, tuple[int, int, int] | None]], size: int = 16) -> Image.Image:
    """A white band of wrapped text lines; a row with a colour gets a swatch of it in front."""
    face = font(size)
    line_height = size + 6
    swatch = size
    lines: list[tuple[str, tuple[int, int, int] | None, bool]] = []
    for text, colour in rows:
        indent = 0 if colour is None else swatch + 8
        for number, part in enumerate(wrap(text, face, width - 16 - indent)):
            lines.append((part, colour, number == 0))
    band = Image.new("RGB", (width, 10 + line_height * len(lines)), "white")
    draw = ImageDraw.Draw(band)
    for row, (text, colour, first) in enumerate(lines):
        y = 5 + row * line_height
        x = 8
        if colour is not None:
            if first:
                draw.rectangle([x, y + 2, x + swatch, y + 2 + swatch], fill=colour, outline=(0, 0, 0))
            x += swatch + 8
        draw.text((x, y), text, fill=(0, 0, 0), font=face)
    return band


def stack(top: Image.Image, bottom: Image.Image) -> Image.Image:
    """``top`` above ``bottom``, left-aligned on white."""
    canvas = Image.new("RGB", (max(top.width, bottom.width), top.height + bottom.height), "white")
    canvas.paste(top, (0, 0))
    canvas.paste(bottom, (0, top.height))
    return canvas


def overlay_figure(image: np.ndarray, masks: np.ndarray, query: str, answer: str,
                   scores: np.ndarray | None = None, present: np.ndarray | None = None) -> Image.Image:
    """The picture `lisa segment` writes as overlay.png: the overlay (small images enlarged)
    above a legend with the query, the answer and one coloured line per mask."""
    factor = view_scale(*image.shape[:2])
    big_masks = np.stack([enlarge(m, factor) for m in masks]) if len(masks) else np.zeros((0,) + enlarge(image, factor).shape[:2], bool)
    view = Image.fromarray(draw_overlay(enlarge(image, factor), big_masks, dim_rest=True))
    rows = legend_rows(masks, query, answer, scores, present)
    return stack(view, text_band(max(view.width, LEGEND_WIDTH), rows))


def legend_rows(masks: np.ndarray, query: str, answer: str, scores: np.ndarray | None = None,
                present: np.ndarray | None = None) -> list[tuple[str, tuple[int, int, int] | None]]:
    """The overlay's legend: the query, the answer, then per mask its area, score and why it is
    empty (the decoder found nothing, or a presence head judged the object absent:
    ``SegmentResult.present``), in the mask's colour."""
    rows: list[tuple[str, tuple[int, int, int] | None]] = [(f"Q: {query}", None), (f"A: {answer}", None)]
    total = masks.shape[1] * masks.shape[2] if len(masks) else 1
    for index, mask in enumerate(masks):
        area = int(mask.sum())
        score = "" if scores is None else f", score {float(scores[index]):.2f}"
        empty = ""
        if present is not None and not present[index]:
            empty = " (empty: judged absent)"
        elif area == 0:
            empty = " (empty: the decoder found nothing)"
        rows.append((f"[SEG] {index + 1}: {area} px ({100 * area / total:.1f} %){score}{empty}",
                     tuple(int(c) for c in PALETTE[index % len(PALETTE)])))
    if not len(masks):
        rows.append(("no mask: the answer has no [SEG]", None))
    return rows


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


def mask_records(masks: np.ndarray, scores: np.ndarray, present: np.ndarray | None = None) -> list[dict]:
    """``mask_record`` of each mask; with a presence head's verdicts (``SegmentResult.present``),
    each record also says ``present`` (false: the object was judged absent, its mask left empty)."""
    records = [mask_record(m, s) for m, s in zip(masks, scores)]
    if present is not None:
        for record, kept in zip(records, present):
            record["present"] = bool(kept)
    return records


def write_outputs(out_dir: Path, image: np.ndarray, query: str, text: str, masks: np.ndarray, scores: np.ndarray,
                  timings: dict[str, float], prompt: str | None = None, present: np.ndarray | None = None) -> list[Path]:
    """mask_<i>.png, overlay.png and result.json; ``prompt`` is the text sent to the model when
    it differs from the query as typed (the segmentation wording added)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index, mask in enumerate(masks):
        path = out_dir / f"mask_{index}.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(path)
        written.append(path)
    overlay_path = out_dir / "overlay.png"
    overlay_figure(image, masks, query, text, scores, present).save(overlay_path)
    written.append(overlay_path)
    result = {
        "query": query,
        **({"prompt": prompt} if prompt is not None and prompt != query else {}),
        "text": text,
        "image_size": [int(image.shape[0]), int(image.shape[1])],
        "masks": mask_records(masks, scores, present),
        "timings_ms": timings,
    }
    result_path = out_dir / "result.json"
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    written.append(result_path)
    return written
