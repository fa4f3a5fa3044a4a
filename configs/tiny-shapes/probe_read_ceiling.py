"""Diagnostic: how well could a seg head's image read (`seg_head_image_attention`) find the
queried object, given the [SEG] states this model's LM produces? Collects, teacher-forced on the
shapes world's referring queries, each [SEG] state with its image's tokens and the target's share
of each cell, then fits reads on the train queries and scores them on val:

- "model_read": the model's own read, as trained;
- "refit": a read with MLP query and key maps, fitted on the same states and tokens (what more
  training of the read alone could give);
- "oracle GxG": the same read over perfect tokens, a one-hot of each cell's kind and colour
  (`lisa.data.shapes.cells`) on a GxG grid of the image: what the [SEG] state allows if the vision
  tower carried everything, on the VLM's grid (8) and on a grid twice as fine (16).

Scores: the attention's weight on the cells the target touches and how often its largest weight
is on one (uniform attention: the share of cells touched).

    python configs/tiny-shapes/probe_read_ceiling.py --model runs/lisa-tiny-v3/3-lisa/model

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from probe_seg_state import seg_states
from shapes_queries import ShapesQuery, add_probe_arguments, shapes_queries

from lisa import LisaPipeline
from lisa.data.shapes.cells import COLOUR_NAMES, KINDS, cell_labels
from lisa.model.losses import target_cell_shares


class FittedRead(torch.nn.Module):
    """softmax over tokens of q(state) . k(token), both two-layer MLPs."""

    def __init__(self, state_dim: int, token_dim: int, width: int = 256) -> None:
        super().__init__()
        self.query = torch.nn.Sequential(torch.nn.Linear(state_dim, width), torch.nn.ReLU(), torch.nn.Linear(width, width))
        self.key = torch.nn.Sequential(torch.nn.Linear(token_dim, width), torch.nn.ReLU(), torch.nn.Linear(width, width))

    def weights(self, state: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return (torch.einsum("nw,ntw->nt", self.query(state), self.key(tokens)) / self.query[-1].out_features**0.5).softmax(-1)


def scores(weights: torch.Tensor, cells: torch.Tensor) -> dict[str, float]:
    touched = cells > 0
    return {"on_target": round(float((weights * touched).sum(-1).mean()), 3),
            "largest_on_target": round(float(touched.gather(1, weights.argmax(-1, keepdim=True)).float().mean()), 3),
            "uniform": round(float(touched.float().mean(-1).mean()), 3)}


def fit(read: torch.nn.Module, train: tuple, steps: int, batch: int = 256, lr: float = 1e-3,
        seed: int = 0) -> torch.nn.Module:
    """Adam on the cross-entropy of the attention (``read.weights``) against the target's cell
    shares. ``train``: states, tokens and cells, each indexable by a tensor of query indices.
    Parameters ``weights`` does not use get no gradient and stay as they are."""
    states, tokens, cells = train
    optimizer = torch.optim.Adam(read.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        pick = torch.randint(0, states.shape[0], (batch,), generator=generator)
        loss = -(cells[pick] * read.weights(states[pick], tokens[pick]).clamp_min(1e-9).log()).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return read


def oracle_tokens(queries: list[ShapesQuery], grid: int) -> torch.Tensor:
    """[n, grid * grid, kinds + colours] one-hot labels of each query's scene cells."""
    by_scene: dict[int, torch.Tensor] = {}  # the queries of one scene share its Scene
    for q in queries:
        if id(q.scene) not in by_scene:
            kind, colour = cell_labels(q.scene, grid)
            by_scene[id(q.scene)] = torch.cat([F.one_hot(torch.from_numpy(kind), len(KINDS)),
                                               F.one_hot(torch.from_numpy(colour), len(COLOUR_NAMES))], -1).float()
    return torch.stack([by_scene[id(q.scene)] for q in queries])


def add_read_fit_arguments(parser: argparse.ArgumentParser) -> None:
    """--train-queries, --val-queries and --steps of a read fitted on referring queries."""
    parser.add_argument("--train-queries", type=int, default=3000)
    parser.add_argument("--val-queries", type=int, default=400)
    parser.add_argument("--steps", type=int, default=1500)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_probe_arguments(parser, family=False)
    add_read_fit_arguments(parser)
    args = parser.parse_args()
    pipe = LisaPipeline.from_pretrained(args.model, device="cpu", dtype="fp32", threads=args.threads)
    head = pipe.model.seg_head
    if head.image_attention is None:
        raise SystemExit(f"{args.model}: its seg head does not read the image tokens")
    queries, states, tokens, masks = {}, {}, {}, {}
    for split, limit in (("train", args.train_queries), ("val", args.val_queries)):
        queries[split] = shapes_queries("referring", args.data_dir, split, limit)
        raw, tokens[split] = seg_states(pipe, queries[split])
        with torch.no_grad():
            states[split] = head.normalised(raw)  # as the read sees them
        masks[split] = [torch.from_numpy(q.truth).to(torch.uint8)[None] for q in queries[split]]
    report: dict[str, object] = {"model": args.model, "train_queries": len(queries["train"]),
                                 "val_queries": len(queries["val"])}
    cells8 = target_cell_shares(masks["val"], 8)
    with torch.no_grad():
        report["model_read"] = scores(head.image_attention.weights(states["val"], tokens["val"]), cells8)
    torch.manual_seed(0)
    train = (states["train"], tokens["train"], target_cell_shares(masks["train"], 8))
    read = fit(FittedRead(states["train"].shape[1], tokens["train"].shape[2]), train, args.steps)
    with torch.no_grad():
        report["refit"] = scores(read.weights(states["val"], tokens["val"]), cells8)
    for grid in (8, 16):
        torch.manual_seed(0)
        train_tokens = oracle_tokens(queries["train"], grid)
        train = (states["train"], train_tokens, target_cell_shares(masks["train"], grid))
        read = fit(FittedRead(states["train"].shape[1], train_tokens.shape[2]), train, args.steps)
        with torch.no_grad():
            report[f"oracle {grid}x{grid}"] = scores(read.weights(states["val"], oracle_tokens(queries["val"], grid)),
                                                      target_cell_shares(masks["val"], grid))
    print(json.dumps(report))


if __name__ == "__main__":
    main()
