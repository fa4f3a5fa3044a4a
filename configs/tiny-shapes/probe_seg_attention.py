"""Diagnostic for a seg head that reads the image tokens (`seg_head_image_attention`): does its
attention land on the queried object? Teacher-forced "[SEG]." answers to the split's referring
queries with a target; for each, the attention's total weight on the cells the target touches
(on the VLM's 8x8 token grid of the whole image) and whether its largest weight is on one.

    python configs/tiny-shapes/probe_seg_attention.py --model runs/lisa-tiny-v3/3a-lisa-few/model

Prints one JSON line, with the share of cells the targets touch (what uniform attention scores).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lisa import LisaPipeline
from lisa.data.shapes.redraw import record_mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("data/shapes"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=160)
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
    split = args.data_dir / args.split
    records = [json.loads(line) for line in (split / "referring.jsonl").open()][: args.limit]
    on_target, argmax_on_target, uniform = [], [], []
    for record in records:
        size = record["targets"][0]["rle"]["size"][0] if record["targets"] else 0
        truth = record_mask(record, size) if size else None
        if truth is None or not truth.any():
            continue
        grid = 8
        cells = truth.reshape(grid, size // grid, grid, size // grid).any(axis=(1, 3)).ravel()
        seen.clear()
        pipe(str(split / record["image"]), record["query"], answers="[SEG].")
        weights = seen[-1][0].numpy()
        on_target.append(float(weights[cells].sum()))
        argmax_on_target.append(bool(cells[weights.argmax()]))
        uniform.append(float(cells.mean()))
    print(json.dumps({"model": args.model, "n": len(on_target),
                      "attention_on_target_cells": round(float(np.mean(on_target)), 3),
                      "uniform_attention_would_give": round(float(np.mean(uniform)), 3),
                      "largest_weight_on_target": round(float(np.mean(argmax_on_target)), 3)}))


if __name__ == "__main__":
    main()
