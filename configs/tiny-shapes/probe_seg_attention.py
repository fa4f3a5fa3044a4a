"""Diagnostic for a seg head that reads the image tokens (`seg_head_image_attention`): does its
attention land on the queried object? Teacher-forced "[SEG]." answers to the split's referring
queries with a target; for each, the attention's total weight on the cells the target touches
(on the VLM's 8x8 token grid of the whole image) and whether its largest weight is on one.

    python configs/tiny-shapes/probe_seg_attention.py --model runs/lisa-tiny-v3/3a-lisa-few/model

Prints one JSON line, with the share of cells the targets touch (what uniform attention scores),
and the same split by what the query names (its colour, its kind, both), with where the largest
weight lands when it misses: on an object of the target's colour, of its kind, on another object
or on the background (the object covering most of that cell, `lisa.data.shapes.cells`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from lisa import LisaPipeline
from lisa.data.shapes.cells import COLOUR_NAMES, KINDS, cell_labels
from lisa.data.shapes.redraw import record_mask, redraw_scene


def names(query: str) -> str:
    """What a referring query names of its target: "colour", "kind" or "colour and kind"."""
    words = set(query.replace("-", " ").split())
    colour, kind = bool(words & set(COLOUR_NAMES[1:])), bool(words & set(KINDS[1:]))
    return {(True, True): "colour and kind", (True, False): "colour", (False, True): "kind"}.get((colour, kind), "other")


def summary(rows: list[dict]) -> dict:
    n = len(rows)
    out = {"n": n}
    for key in ("on_target", "uniform", "argmax_on_target"):
        out[key] = round(float(np.mean([r[key] for r in rows])), 3) if n else None
    misses = [r["miss"] for r in rows if not r["argmax_on_target"]]
    for where in ("same colour", "same kind", "other object", "background"):
        out[f"miss_on_{where.replace(' ', '_')}"] = round(misses.count(where) / n, 3) if n else None
    return out


def referring_items(split_dir: Path, split: str, limit: int) -> Iterator[tuple]:
    """(image path, query, target mask, redrawn scene) of the first ``limit`` referring records
    that have a target."""
    for record in [json.loads(line) for line in (split_dir / "referring.jsonl").open()][:limit]:
        size = record["targets"][0]["rle"]["size"][0] if record["targets"] else 0
        truth = record_mask(record, size) if size else None
        if truth is None or not truth.any():
            continue
        scene, _ = redraw_scene(split, int(Path(record["image"]).stem.split("_")[-1]), size=size)
        yield str(split_dir / record["image"]), record["query"], truth, scene


def reasoning_items(split: str, scenes: int) -> Iterator[tuple]:
    """(image, query, target mask, scene) of the reasoning query of each of the first ``scenes``
    scenes that has a target, redrawn as ``lisa shapes generate`` drew them."""
    for index in range(scenes):
        scene, reasoning = redraw_scene(split, index)
        truth = scene.target_mask(reasoning.targets) if reasoning.targets else None
        if truth is not None and truth.any():
            yield scene.image, reasoning.texts[0], truth, scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("data/shapes"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=160)
    parser.add_argument("--family", choices=["referring", "reasoning"], default="referring",
                        help="reasoning: the reasoning query of each of the first --limit scenes, redrawn")
    parser.add_argument("--threads", default="auto")
    args = parser.parse_args()
    pipe = LisaPipeline.from_pretrained(args.model, device="cpu", dtype="fp32", threads=args.threads)
    read = pipe.model.seg_head.image_attention
    if read is None:
        raise SystemExit(f"{args.model}: its seg head does not read the image tokens")
    seen: list[torch.Tensor] = []
    original = read.weights

    def recording(state: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        weights = original(state, tokens)
        seen.append(weights.detach())
        return weights

    read.weights = recording  # type: ignore[method-assign]
    items = (reasoning_items(args.split, args.limit) if args.family == "reasoning"
             else referring_items(args.data_dir / args.split, args.split, args.limit))
    rows: list[dict] = []
    for image, query, truth, scene in items:
        size = truth.shape[0]
        grid = 8
        cells = truth.reshape(grid, size // grid, grid, size // grid).any(axis=(1, 3)).ravel()
        seen.clear()
        pipe(image, query, answers="[SEG].")
        weights = seen[-1][0].numpy()
        peak = int(weights.argmax())
        kind, colour = cell_labels(scene, grid)
        target = max(range(len(scene.objects)), key=lambda i: int((scene.object_mask(i) & truth).sum()))
        hit = scene.objects[target]
        miss = ("background" if kind[peak] == 0 else "same colour" if COLOUR_NAMES[colour[peak]] == hit.colour
                else "same kind" if KINDS[kind[peak]] == hit.kind else "other object")
        rows.append({"names": names(query), "on_target": float(weights[cells].sum()),
                     "argmax_on_target": bool(cells[peak]), "uniform": float(cells.mean()), "miss": miss})
    overall = summary(rows)
    print(json.dumps({"model": args.model, "n": overall["n"],
                      "attention_on_target_cells": overall["on_target"],
                      "uniform_attention_would_give": overall["uniform"],
                      "largest_weight_on_target": overall["argmax_on_target"],
                      "misses": {k: v for k, v in overall.items() if k.startswith("miss_")},
                      "by_what_the_query_names": {name: summary([r for r in rows if r["names"] == name])
                                                  for name in sorted({r["names"] for r in rows})}}))

if __name__ == "__main__":
    main()
