"""Diagnostic for a seg head that reads the image tokens (`seg_head_image_attention`): does its
attention land on the queried object? Teacher-forced "[SEG]." answers to the split's referring
queries with a target; for each, the attention's total weight on the cells the target touches
(on the read's grid of the whole image: the VLM's 8x8 tokens, or SAM's
32x32 embedding with ``seg_head_read: mask_embedding``) and whether its largest weight is on one.
``--second-read`` probes the second read over the embedding instead (``seg_head_embedding_read``).

    python configs/tiny-shapes/probe_seg_attention.py --model runs/lisa-tiny-v3/3a-lisa-few/model

Prints one JSON line, with the share of cells the targets touch (what uniform attention scores),
and the same split by what the query names (its colour, its kind, both), with where the largest
weight lands when it misses: on an object of the target's colour, of its kind, on another object
or on the background (the object covering most of that cell, `lisa.data.shapes.cells`).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from shapes_queries import add_probe_arguments, main_object, names, shapes_queries

from lisa import LisaPipeline
from lisa.data.shapes.cells import COLOUR_NAMES, KINDS, cell_labels
from lisa.model.losses import target_cell_shares


def summary(rows: list[dict]) -> dict:
    n = len(rows)
    out = {"n": n}
    for key in ("on_target", "uniform", "argmax_on_target"):
        out[key] = round(float(np.mean([r[key] for r in rows])), 3) if n else None
    misses = [r["miss"] for r in rows if not r["argmax_on_target"]]
    for where in ("same colour", "same kind", "other object", "background"):
        out[f"miss_on_{where.replace(' ', '_')}"] = round(misses.count(where) / n, 3) if n else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_probe_arguments(parser)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=160)
    parser.add_argument("--second-read", action="store_true", help="the second read, over the mask embedding")
    args = parser.parse_args()
    pipe = LisaPipeline.from_pretrained(args.model, device="cpu", dtype="fp32", threads=args.threads)
    head = pipe.model.seg_head
    read = head.embedding_attention if args.second_read else head.image_attention
    if read is None:
        raise SystemExit(f"{args.model}: its seg head has no such read")
    seen: list[torch.Tensor] = []
    original = read.weights

    def recording(state: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        weights = original(state, tokens, valid)
        seen.append(weights.detach())
        return weights

    read.weights = recording  # type: ignore[method-assign]
    rows: list[dict] = []
    for item in shapes_queries(args.family, args.data_dir, args.split, args.limit):
        seen.clear()
        pipe(item.image, item.query, answers="[SEG].")
        weights = seen[-1][0].numpy()
        grid = round(len(weights) ** 0.5)  # the VLM's 8x8 tokens, or SAM's 32x32 embedding (square images)
        cells = (target_cell_shares([torch.from_numpy(item.truth)[None].to(torch.uint8)], grid)[0] > 0).numpy()
        peak = int(weights.argmax())
        kind, colour = cell_labels(item.scene, grid)
        hit = item.scene.objects[main_object(item.scene, item.truth)]  # several targets: the largest
        miss = ("background" if kind[peak] == 0 else "same colour" if COLOUR_NAMES[colour[peak]] == hit.colour
                else "same kind" if KINDS[kind[peak]] == hit.kind else "other object")
        rows.append({"names": names(item.query), "on_target": float(weights[cells].sum()),
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
