"""Diagnostic: could the seg head find the queried object in SAM's image embedding instead of the
VLM's 8x8 image tokens? Collects, teacher-forced on the shapes world's referring queries, each
[SEG] state (as the seg head normalises it) and its image's SAM embedding ([C, 32, 32] for
lisa-tiny), fits reads (`probe_read_ceiling.FittedRead`) on the train queries and scores them on
val, over the embedding at its own grid and average-pooled to coarser ones; "vlm tokens" refits
the same read on the VLM's tokens for comparison (needs a seg head that reads them).

Scores as in probe_read_ceiling.py: the attention's weight on the cells the target touches, and
how often its largest weight is on one (uniform attention: the share of cells touched).

    python configs/tiny-shapes/probe_sam_read.py --model src/lisa/checkpoints/lisa-tiny

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F
from probe_read_ceiling import FittedRead, add_read_fit_arguments, fit, scores
from probe_seg_state import seg_states
from shapes_queries import ShapesQuery, add_probe_arguments, shapes_queries

from lisa import LisaPipeline
from lisa.data.image_io import load_image
from lisa.model.losses import target_cell_shares


@torch.no_grad()
def sam_embeddings(pipe: LisaPipeline, queries: list[ShapesQuery]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each distinct image's SAM embedding [I, C, h, w] and each query's image index [n]."""
    backbone = pipe.model.mask_backbone
    paths = list(dict.fromkeys(str(q.image) for q in queries))
    index = {path: i for i, path in enumerate(paths)}
    embeddings = []
    for start in range(0, len(paths), 32):
        views = [backbone.view(load_image(path)) for path in paths[start : start + 32]]
        if any(v.resized_size != (backbone.image_size, backbone.image_size) for v in views):
            raise SystemExit("this probe lays the target's cells on the whole embedding: square images only")
        embeddings.append(backbone.embed(torch.stack([v.pixels for v in views])).embeddings.float())
    return torch.cat(embeddings), torch.tensor([index[str(q.image)] for q in queries])


class IndexedTokens:
    """tokens[pick] of per-query tokens held once per image: [len(pick), T, C]."""

    def __init__(self, per_image: torch.Tensor, image_of_query: torch.Tensor) -> None:
        self.per_image = per_image.flatten(2).transpose(1, 2).contiguous()  # [I, h*w, C]
        self.image_of_query = image_of_query
        self.shape = (len(image_of_query), *self.per_image.shape[1:])

    def __getitem__(self, pick: torch.Tensor) -> torch.Tensor:
        return self.per_image[self.image_of_query[pick]]


@torch.no_grad()
def weights_in_chunks(read: FittedRead, states: torch.Tensor, tokens: IndexedTokens) -> torch.Tensor:
    picks = torch.arange(states.shape[0]).split(128)
    return torch.cat([read.weights(states[p], tokens[p]) for p in picks])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_probe_arguments(parser, family=False)
    add_read_fit_arguments(parser)
    parser.add_argument("--grids", default="32,16,8", help="pool the embedding to these grids (each divides its side)")
    args = parser.parse_args()
    pipe = LisaPipeline.from_pretrained(args.model, device="cpu", dtype="fp32", threads=args.threads)
    head = pipe.model.seg_head
    data = {}
    for split, limit in (("train", args.train_queries), ("val", args.val_queries)):
        queries = shapes_queries("referring", args.data_dir, split, limit)
        raw, vlm_tokens = seg_states(pipe, queries)
        with torch.no_grad():
            states = head.normalised(raw)
        embeddings, image_of_query = sam_embeddings(pipe, queries)
        masks = [torch.from_numpy(q.truth).to(torch.uint8)[None] for q in queries]
        data[split] = (states, vlm_tokens, embeddings, image_of_query, masks)
    report: dict[str, object] = {"model": args.model, "train_queries": len(data["train"][0]),
                                 "val_queries": len(data["val"][0]), "sam_grid": list(data["val"][2].shape[1:])}
    side = data["val"][2].shape[-1]
    for grid in [int(g) for g in args.grids.split(",")]:
        torch.manual_seed(0)
        tokens, cells = {}, {}
        for split, (_, _, embeddings, image_of_query, masks) in data.items():
            tokens[split] = IndexedTokens(F.avg_pool2d(embeddings, side // grid), image_of_query)
            cells[split] = target_cell_shares(masks, grid)
        read = FittedRead(data["train"][0].shape[1], tokens["train"].shape[2])
        fit(read, (data["train"][0], tokens["train"], cells["train"]), args.steps, batch=128)
        report[f"sam {grid}x{grid}"] = scores(weights_in_chunks(read, data["val"][0], tokens["val"]), cells["val"])
    if data["val"][1] is not None:
        torch.manual_seed(0)
        tokens = {split: IndexedTokens(d[1].transpose(1, 2)[..., None], torch.arange(len(d[0]))) for split, d in data.items()}
        cells = {split: target_cell_shares(d[4], 8) for split, d in data.items()}
        read = FittedRead(data["train"][0].shape[1], tokens["train"].shape[2])
        fit(read, (data["train"][0], tokens["train"], cells["train"]), args.steps, batch=128)
        report["vlm tokens 8x8"] = scores(weights_in_chunks(read, data["val"][0], tokens["val"]), cells["val"])
    print(json.dumps(report))


if __name__ == "__main__":
    main()
