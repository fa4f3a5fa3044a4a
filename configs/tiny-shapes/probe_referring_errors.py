"""Diagnostic: when a model misses a referring query, is it the wrong object or a bad mask?

Scores the masks that `lisa eval --save-predictions` wrote for a shapes split's referring
queries against every object of each scene (the generator redraws the scenes exactly) and sorts
the queries with a target into:
- right: IoU with the target >= 0.5;
- wrong object: IoU >= 0.5 with one other object (the model found a thing, not the asked-for one);
- declined: no mask at all (the model said the object is not there);
- poor mask: none of these (a blob, a piece, or several objects).

    lisa eval --model M --dataset jsonl --names referring --data-dir data/shapes --split val \
        --limit 300 --save-predictions out/pred --out out/report.json
    python configs/tiny-shapes/probe_referring_errors.py --report out/report.json \
        --pred-dir out/pred --data-dir data/shapes --split val
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import numpy as np
from PIL import Image

from lisa.data.shapes.redraw import record_mask, redraw_scene
from lisa.eval.metrics import score_mask

RIGHT = 0.5


def classify(pred: np.ndarray, truth: np.ndarray, objects: list[np.ndarray]) -> str:
    if not pred.any():
        return "declined"
    if score_mask(pred, truth).iou >= RIGHT:
        return "right"
    others = [o for o in objects if np.logical_and(o, truth).sum() < 0.5 * o.sum()]
    return "wrong object" if any(score_mask(pred, o).iou >= RIGHT for o in others) else "poor mask"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", type=Path, required=True, help="lisa eval --out of the referring run")
    parser.add_argument("--pred-dir", type=Path, required=True, help="its --save-predictions folder")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--seed", type=int, default=0, help="the world's generator seed")
    args = parser.parse_args()
    records = [json.loads(line) for line in (args.data_dir / args.split / "referring.jsonl").open()]
    counts: Counter[str] = Counter()
    for sample in json.loads(args.report.read_text())["per_sample"]:
        record = records[int(sample["item_id"].split(":")[1]) - 1]  # item ids count from 1
        if not record["targets"]:
            continue
        size = record["targets"][0]["rle"]["size"][0]
        truth = record_mask(record, size)
        scene = redraw_scene(args.split, int(Path(record["image"]).stem.split("_")[1]), args.seed, size)[0]
        objects = [scene.object_mask(i) for i in range(len(scene.objects))]
        pred_path = args.pred_dir / f"{quote(sample['item_id'], safe='')}.png"
        pred = np.asarray(Image.open(pred_path).convert("L")) > 0 if pred_path.is_file() else np.zeros_like(truth)
        counts[classify(pred, truth, objects)] += 1
    total = sum(counts.values())
    for name in ("right", "wrong object", "poor mask", "declined"):
        print(f"{name:13s} {counts[name]:4d}  {counts[name] / max(total, 1):.1%}")
    print(f"{'queries':13s} {total:4d}")


if __name__ == "__main__":
    main()
