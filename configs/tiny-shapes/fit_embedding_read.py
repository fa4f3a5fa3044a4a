"""lisa-tiny: move a model's seg-head read from the VLM's 8x8 image tokens to SAM's image
embedding (`model.seg_head_read: mask_embedding`, 32x32 for lisa-tiny), and fit the new read's
query and key before any mask training: the cross-entropy of its attention against each
referring target's share of the embedding's cells, on the [SEG] states the model's own LM gives
teacher-forced ("[SEG]."), with everything else frozen. The read's output layer starts at zero
(`lisa.train.model_setup.replace_image_read`), so the fitted folder segments like its base until
a LISA stage trains the rest; its dense prompt is where the read looks.

    python configs/tiny-shapes/fit_embedding_read.py --model src/lisa/checkpoints/lisa-tiny \\
        --out runs/lisa-tiny-v4/4r-embedding-read/model

With `--beside`, the model keeps its read of the image tokens and gains a second read over the
embedding (`model.seg_head_embedding_read`, `lisa.train.model_setup.add_embedding_read`), fitted
the same way; its output layer and its dense prompt's vector start at zero, so the folder segments
exactly like its base until a LISA stage trains them.

    python configs/tiny-shapes/fit_embedding_read.py --model src/lisa/checkpoints/lisa-tiny --beside \
        --out runs/lisa-tiny-v5/4r-both-reads/model

Prints one JSON line: the val scores (as probe_sam_read.py reports them) and the fit's time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from probe_read_ceiling import add_read_fit_arguments, fit, scores
from probe_sam_read import IndexedTokens, sam_embeddings, weights_in_chunks
from probe_seg_state import seg_states
from shapes_queries import shapes_queries
from train_vision_cells import save_with_base_files

from lisa import LisaPipeline
from lisa.model.losses import target_cell_shares
from lisa.train.model_setup import add_embedding_read, replace_image_read


def collect(pipe: LisaPipeline, data_dir: Path, split: str, limit: int, grid: int | None):
    """Normalised [SEG] states [n, d], the SAM embeddings (pooled to grid x grid cells) as
    IndexedTokens, and the targets' shares of those cells."""
    queries = shapes_queries("referring", data_dir, split, limit)
    raw, _ = seg_states(pipe, queries)
    with torch.no_grad():
        states = pipe.model.seg_head.normalised(raw)
    embeddings, image_of_query = sam_embeddings(pipe, queries)
    if grid is not None:
        embeddings = F.adaptive_avg_pool2d(embeddings, grid)
    grid = int(embeddings.shape[-1])
    cells = target_cell_shares([torch.from_numpy(q.truth).to(torch.uint8)[None] for q in queries], grid)
    return states, IndexedTokens(embeddings, image_of_query), cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a lisa-tiny folder whose seg head reads the image")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("data/shapes"))
    add_read_fit_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--grid", type=int, default=None,
                        help="pool the embedding to grid x grid cells for the read (model.seg_head_read_grid)")
    parser.add_argument("--beside", action="store_true",
                        help="keep the read of the image tokens and add a second read over the embedding")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", default="auto")
    args = parser.parse_args()
    pipe = LisaPipeline.from_pretrained(str(args.model), device="cpu", dtype="fp32", threads=args.threads)
    model = pipe.model
    if model.config.seg_head_read != "image_tokens" or model.config.seg_head_embedding_read:
        raise SystemExit(f"{args.model}: its seg head already reads the mask embedding")
    # The states and embeddings do not depend on the read: collect them with the base's head.
    train = collect(pipe, args.data_dir, "train", args.train_queries, args.grid)
    val = collect(pipe, args.data_dir, "val", args.val_queries, args.grid)
    torch.manual_seed(args.seed)
    if args.beside:
        add_embedding_read(model, args.grid)
        read = model.seg_head.embedding_attention
    else:
        replace_image_read(model, "mask_embedding", args.grid)
        read = model.seg_head.image_attention
    assert read is not None
    start = time.perf_counter()
    fit(read, train, args.steps, batch=args.batch_size, lr=args.lr, seed=args.seed)  # query and key: the value is unused
    with torch.no_grad():
        val_scores = scores(weights_in_chunks(read, val[0], val[1]), val[2])
    save_with_base_files(model, args.model, args.out)
    print(json.dumps({"val": val_scores, "fit_seconds": round(time.perf_counter() - start, 1), "out": str(args.out)}))


if __name__ == "__main__":
    main()
