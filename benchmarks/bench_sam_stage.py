"""Cost of one SAM-stage (stage 1) training step for SAM sizes, on real batches of a JSONL folder.

    python benchmarks/bench_sam_stage.py --data data/shapes/train [--steps 4] [--threads 1] \
        --variant base --variant patch=8 --variant hidden=256,decoder_mlp=1024

Each variant overrides fields of lisa-tiny's ``SamSize`` (lisa.model.build). The variants run
round-robin, one step each in turn, so that a machine shared with other work slows them alike.
Prints parameters, the low-resolution mask grid and the median ms per step (forward, backward,
AdamW) at the stage's batch size.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import fields, replace
from pathlib import Path

import torch

from lisa.model.build import SamSize, build_sam_config
from lisa.train.sam_pretrain import collect_instances, fresh_sam, make_batch, sam_loss


def parse_variant(text: str) -> SamSize:
    if text == "base":
        return SamSize()
    known = {f.name for f in fields(SamSize)}
    changes = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key not in known or not value.isdigit():
            raise SystemExit(f"--variant {text!r}: use KEY=INT[,KEY=INT] with keys {', '.join(sorted(known))}")
        changes[key] = int(value)
    return replace(SamSize(), **changes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="a JSONL folder, e.g. data/shapes/train")
    parser.add_argument("--variant", action="append", default=[], help="base, or SamSize overrides KEY=INT,...")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per variant (one untimed first)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    instances = collect_instances(args.data)
    names = args.variant or ["base"]
    runs = []
    for name in names:
        size = parse_variant(name)
        torch.manual_seed(0)
        sam = fresh_sam(build_sam_config(size)).train()
        optimizer = torch.optim.AdamW([p for p in sam.parameters() if p.requires_grad], lr=1e-4)
        runs.append((name, size, sam, optimizer, []))
    for step in range(args.steps + 1):
        for name, size, sam, optimizer, times in runs:
            batch = make_batch(instances, step, 0, args.batch_size, size.image_size)
            start = time.perf_counter()
            loss, _ = sam_loss(sam, batch, size.image_size)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step:  # the first step warms up allocators and kernels
                times.append(time.perf_counter() - start)
    print(f"{'variant':32} {'params':>8} {'masks':>8} {'ms/step':>8}")
    for name, size, sam, _, times in runs:
        params = sum(p.numel() for p in sam.parameters()) / 1e6
        grid = 4 * size.image_size // size.patch
        print(f"{name:32} {params:7.2f}M {grid:>3}x{grid:<4} {1000 * statistics.median(times):8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
