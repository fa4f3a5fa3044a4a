"""A few generated images with coloured shapes, written as a JSONL dataset folder.

Used by ``configs/smoke.yaml`` and the tests: a run can build its own data in seconds,
with no download. Layout: ``DIR/{train,val}/data.jsonl`` + PNG images and masks.

It is part of the installed package, not a test fixture: a training config's
``{type: synthetic}`` data source (the CPU smoke run) writes its data with it at run time.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 40), "blue": (40, 60, 220), "yellow": (230, 210, 30)}
SHAPES = ("square", "circle")


def _shape_mask(shape: str, size: int, rng: random.Random) -> np.ndarray:
    """[size, size] bool: a square or a disc of random size and place."""
    side = rng.randint(size // 5, size // 2)
    x0, y0 = rng.randint(0, size - side), rng.randint(0, size - side)
    yy, xx = np.mgrid[0:size, 0:size]
    if shape == "square":
        return (xx >= x0) & (xx < x0 + side) & (yy >= y0) & (yy < y0 + side)
    r = side / 2
    return (xx - x0 - r + 0.5) ** 2 + (yy - y0 - r + 0.5) ** 2 <= r * r


def _write_image(folder: Path, stem: str, size: int, rng: random.Random) -> list[dict]:
    """One image with 1-2 shapes of distinct colours; returns its JSONL records."""
    pixels = np.full((size, size, 3), rng.randint(90, 160), dtype=np.uint8)
    records = []
    for k, colour in enumerate(rng.sample(sorted(COLOURS), rng.randint(1, 2))):
        shape = rng.choice(SHAPES)
        mask = _shape_mask(shape, size, rng)
        pixels[mask] = COLOURS[colour]
        mask_name = f"{stem}_m{k}.png"
        records.append({"mask": mask_name, "query": f"the {colour} {shape}", "array": mask})
    Image.fromarray(pixels).save(folder / f"{stem}.png")
    out = []
    for record in records:
        # A later shape may cover an earlier one: the mask is what stays visible.
        visible = record["array"] & np.all(pixels == COLOURS[record["query"].split()[1]], axis=-1)
        Image.fromarray(visible.astype(np.uint8) * 255).save(folder / record["mask"])
        out.append({"image": f"{stem}.png", "query": record["query"], "targets": [{"mask": record["mask"]}]})
    return out


def write_synthetic(directory: str | Path, images: int = 16, size: int = 64, seed: int = 0,
                    val_images: int = 4) -> Path:
    """Write ``images`` training and ``val_images`` validation images (skipped if present)."""
    directory = Path(directory)
    rng = random.Random(seed)
    for split, count in (("train", images), ("val", val_images)):
        folder = directory / split
        if (folder / "data.jsonl").is_file():
            continue
        folder.mkdir(parents=True, exist_ok=True)
        lines = []
        for index in range(count):
            lines.extend(_write_image(folder, f"{split}_{index:04d}", size, rng))
        tmp = folder / "data.jsonl.tmp"
        tmp.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        tmp.replace(folder / "data.jsonl")
    return directory
