"""Render README's figure: each example's input, query, answer and overlay, in one PNG.

    python examples/make_figure.py [--model lisa-tiny] [--out examples/figure.png]

The examples are the first test-split scenes of each kind (examples.json), not picked by result.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lisa.data.image_io import load_image
from lisa.inference.pipeline import LisaPipeline
from lisa.inference.render import draw_overlay

HERE = Path(__file__).resolve().parent
CAPTION_HEIGHT = 96


def panel(image: np.ndarray, overlay: np.ndarray, lines: list[str]) -> Image.Image:
    height, width = image.shape[:2]
    canvas = Image.new("RGB", (2 * width + 8, height + CAPTION_HEIGHT), "white")
    canvas.paste(Image.fromarray(image), (0, 0))
    canvas.paste(Image.fromarray(overlay), (width + 8, 0))
    draw = ImageDraw.Draw(canvas)
    y = height + 4
    for line in lines:
        for wrapped in textwrap.wrap(line, width=(2 * width) // 6) or [""]:
            draw.text((4, y), wrapped, fill="black")
            y += 12
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="lisa-tiny")
    parser.add_argument("--out", type=Path, default=HERE / "figure.png")
    args = parser.parse_args()
    pipe = LisaPipeline.from_pretrained(args.model, device="cpu", dtype="float32")
    panels = []
    for example in json.loads((HERE / "examples.json").read_text()):
        image = load_image(HERE / example["image"])
        result = pipe(image, example["query"])
        lines = [f"[{example['kind']}]", f"Q: {example['query']}", f"A: {result.text}"]
        panels.append(panel(image, draw_overlay(image, result.masks), lines))
        print(f"{example['image']}: {result.text!r}, {len(result.masks)} mask(s)")
    width = max(p.width for p in panels)
    figure = Image.new("RGB", (width, sum(p.height for p in panels)), "white")
    y = 0
    for p in panels:
        figure.paste(p, (0, y))
        y += p.height
    figure.save(args.out)
    print(f"figure written to {args.out}")


if __name__ == "__main__":
    main()
