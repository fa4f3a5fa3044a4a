"""Render README's figure: each example's input, query, answer and overlay, in one PNG.

    python examples/make_figure.py [--model lisa-tiny] [--out examples/figure.png]

The examples are the first test-split scenes of each kind (examples.json), not picked by result.
Each kind label carries the IoU with the scene's true mask (redrawn by the shapes generator).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from lisa.data.image_io import load_image
from lisa.data.shapes.redraw import redraw_target
from lisa.eval.evaluate import union_mask
from lisa.eval.metrics import score_mask
from lisa.inference.pipeline import LisaPipeline
from lisa.inference.render import enlarge, overlay_figure, stack, text_band, view_scale

HERE = Path(__file__).resolve().parent
GAP = 12


def row(image: np.ndarray, kind: str, query: str, result) -> Image.Image:
    """[kind] above: the input (enlarged like the overlay) | the overlay with its legend."""
    left = Image.fromarray(enlarge(image, view_scale(*image.shape[:2])))
    right = overlay_figure(image, result.masks, query, result.text, result.scores, result.present)
    canvas = Image.new("RGB", (left.width + GAP + right.width, right.height), "white")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width + GAP, 0))
    return stack(text_band(canvas.width, [(f"[{kind}]", None)]), canvas)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="lisa-tiny")
    parser.add_argument("--out", type=Path, default=HERE / "figure.png")
    args = parser.parse_args()
    pipe = LisaPipeline.from_pretrained(args.model, device="cpu", dtype="float32")
    rows = []
    for example in json.loads((HERE / "examples.json").read_text()):
        image = load_image(HERE / example["image"])
        result = pipe(image, example["query"])
        truth = redraw_target(**example["truth"])
        iou = score_mask(union_mask(result.masks, *truth.shape), truth).iou
        rows.append(row(image, f"{example['kind']}; IoU with the true mask {iou:.2f}", example["query"], result))
        print(f"{example['image']}: {result.text!r}, {len(result.masks)} mask(s), IoU {iou:.3f}")
    figure = rows[0]
    for next_row in rows[1:]:
        figure = stack(figure, stack(Image.new("RGB", (1, GAP), "white"), next_row))
    figure.save(args.out)
    print(f"figure written to {args.out}")


if __name__ == "__main__":
    main()
