"""Diagnostic: what do the image tokens the LM reads carry? Linear probes on a model's projected
image features (one per vision-tower cell, as the LM receives them), fitted on train scenes and
scored on val scenes of the shapes world, for four per-cell labels:

- colour and kind of the object that covers most of the cell (`lisa.data.shapes.cells`; cells
  less than a third covered by any object are background and left out), the binding a query
  like "the red circle" needs;
- the cell's column and row, the place a [SEG] prompt needs.

    python configs/tiny-shapes/probe_vlm_tokens.py --model runs/lisa-tiny-v2/2-vlm/model

Prints one JSON line: probe accuracy per label on the val cells an object covers (columns and
rows: on every cell), with the majority-class rate beside it.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from lisa import LisaPipeline
from lisa.data.shapes.cells import cell_labels
from lisa.data.shapes.redraw import redraw_scene

@torch.no_grad()
def token_features(pipe: LisaPipeline, images: list[np.ndarray]) -> torch.Tensor:
    model = pipe.model
    inputs = model.adapter.image_inputs(images, pipe.image_processor)
    return torch.stack(model.adapter.image_features(model.vlm, inputs)).float()  # [B, N, D]


def fit_and_score(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
                  classes: int, steps: int = 500) -> float:
    """Accuracy on val of ``fit_predict``."""
    return float((fit_predict(x_train, y_train, x_val, classes, steps) == y_val).float().mean())


def fit_predict(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, classes: int,
                steps: int = 500) -> torch.Tensor:
    """Multinomial logistic regression (standardised inputs, L-BFGS); its classes for x_val."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
    torch.manual_seed(0)
    probe = torch.nn.Linear(x_train.shape[1], classes)
    optimizer = torch.optim.LBFGS(probe.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(probe(x_train), y_train) + 1e-3 * probe.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return probe(x_val).argmax(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--train-scenes", type=int, default=300)
    parser.add_argument("--val-scenes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="the world's generator seed")
    parser.add_argument("--threads", default="auto")
    args = parser.parse_args()
    pipe = LisaPipeline.from_pretrained(args.model, device="cpu", dtype="fp32", threads=args.threads)
    data = {}
    for split, count in (("train", args.train_scenes), ("val", args.val_scenes)):
        features, kind_ids, colour_ids = [], [], []
        for start in range(0, count, 16):
            scenes = [redraw_scene(split, i, args.seed)[0] for i in range(start, min(count, start + 16))]
            batch = token_features(pipe, [s.image for s in scenes])
            if batch.shape[1] != 64:
                raise SystemExit(f"expected an 8x8 token grid, got {batch.shape[1]} tokens")
            features.append(batch.flatten(0, 1))
            for scene in scenes:
                kind, colour = cell_labels(scene, 8)
                kind_ids.append(kind - 1)  # -1: background, left out of the kind and colour probes
                colour_ids.append(colour - 1)
        data[split] = (torch.cat(features), torch.from_numpy(np.concatenate(kind_ids)),
                       torch.from_numpy(np.concatenate(colour_ids)))
    cells = torch.arange(64)
    report: dict[str, object] = {"model": args.model}
    (x_train, kind_train, colour_train), (x_val, kind_val, colour_val) = data["train"], data["val"]
    for name, y_train, y_val in (("kind", kind_train, kind_val), ("colour", colour_train, colour_val)):
        on_train, on_val = y_train >= 0, y_val >= 0  # the cells an object covers
        accuracy = fit_and_score(x_train[on_train], y_train[on_train], x_val[on_val], y_val[on_val],
                                 int(y_train.max()) + 1)
        majority = float((y_val[on_val] == torch.mode(y_train[on_train]).values).float().mean())
        report[name] = {"probe": round(accuracy, 3), "majority": round(majority, 3), "cells": int(on_val.sum())}
    for name, label in (("column", cells % 8), ("row", cells // 8)):
        y_train = label.repeat(len(x_train) // 64)
        y_val = label.repeat(len(x_val) // 64)
        report[name] = {"probe": round(fit_and_score(x_train, y_train, x_val, y_val, 8), 3), "majority": 0.125}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
