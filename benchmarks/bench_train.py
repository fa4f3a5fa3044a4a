"""Training throughput and peak memory for a config: samples/s over timed optimizer steps.

    python benchmarks/bench_train.py --config configs/smoke.yaml [--steps 10] [--warmup 2] [--no-share-prefix]

Runs in a temporary run folder (nothing is written next to the config). Peak memory is the
process's max RSS on CPU and torch's peak allocated memory on GPU.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from lisa.train.config import load_config
from lisa.train.trainer import Trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed optimizer steps first")
    parser.add_argument("--no-share-prefix", action="store_true",
                        help="run the shared system prompt once per row (model.share_prefix: false)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as run_dir:
        config = load_config(args.config, {"run_dir": run_dir})
        config.optim.max_steps = args.warmup + args.steps + 1
        config.val = None
        if args.no_share_prefix:
            config.model.share_prefix = False
        trainer = Trainer(config, progress=False)
        trainer.model.train()
        for _ in range(args.warmup):
            trainer.optimizer_step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.optimizer_step()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    o = config.optim
    samples = args.steps * o.batch_size * o.grad_accum * trainer.accelerator.num_processes
    print(f"config: {args.config}  device: {trainer.accelerator.device}  threads: {torch.get_num_threads()}")
    print(f"micro-batch {o.batch_size} x accum {o.grad_accum} x {trainer.accelerator.num_processes} process(es); "
          f"precompute_sam_embeddings={config.precompute_sam_embeddings} share_prefix={config.model.share_prefix}")
    print(f"samples/s: {samples / elapsed:.2f}  ({args.steps} steps in {elapsed:.2f} s, {elapsed / args.steps * 1000:.0f} ms/step)")
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak host memory (max RSS): {peak_rss_mib:.0f} MiB")
    if torch.cuda.is_available():
        print(f"peak GPU memory (allocated): {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
