"""Per-query latency of LisaPipeline: cold, warm (new image), warm with a cached image embedding.

    python benchmarks/bench_inference.py --model lisa-tiny --device cpu
    python benchmarks/bench_inference.py --model tiny-random          # a tiny random-weight model

"cold" is the first query after loading (includes one-off allocations); "warm" queries use a
new image each time (both image encoders run); "cached" queries ask new questions about an
image already seen, so only the prompt, generation and mask decoding run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lisa-tiny", help='model folder, shipped name, or "tiny-random"')
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=256, help="side of the synthetic test images")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    return parser.parse_args()


def load(model: str, device: str, dtype: str, threads: int | None = None):
    from lisa.inference.pipeline import LisaPipeline
    from lisa.model.build import write_tiny_model

    if model == "tiny-random":
        model = str(write_tiny_model(tempfile.mkdtemp(prefix="lisa-tiny-random-")))
    return LisaPipeline.from_pretrained(model, device=device, dtype=dtype, threads=threads)  # None: keep torch's


def timed(pipe, image, query: str, max_new_tokens: int) -> tuple[float, int, dict]:
    start = time.perf_counter()
    result = pipe(image, query, max_new_tokens=max_new_tokens, raw=True)  # the queries as written, as before
    if pipe.model.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000, len(result.masks), result.timings


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    size = args.image_size
    new_image = lambda: rng.integers(0, 256, (size, size, 3), dtype=np.uint8)  # noqa: E731
    queries = ["What is the red object?", "Segment the largest shape.", "Which thing keeps you dry in the rain?"]

    load_start = time.perf_counter()
    pipe = load(args.model, args.device, args.dtype, args.threads or None)
    load_ms = (time.perf_counter() - load_start) * 1000
    cold_ms, _, _ = timed(pipe, new_image(), queries[0], args.max_new_tokens)

    warm, cached, stages = [], [], []
    for run in range(args.runs):
        image = new_image()
        ms, _, _ = timed(pipe, image, queries[run % 3], args.max_new_tokens)
        warm.append(ms)
        ms, _, timings = timed(pipe, image, queries[(run + 1) % 3], args.max_new_tokens)
        cached.append(ms)
        stages.append(timings)

    def stage(name: str) -> float:
        return statistics.median(t[name] for t in stages)

    print(f"model={args.model} device={pipe.model.device} dtype={pipe.model.dtype} threads={torch.get_num_threads()} "
          f"image={size}x{size} max_new_tokens={args.max_new_tokens} runs={args.runs}")
    print(f"load_ms={load_ms:.1f}")
    print(f"cold_query_ms={cold_ms:.1f}")
    print(f"warm_query_ms median={statistics.median(warm):.1f} min={min(warm):.1f} max={max(warm):.1f}")
    print(f"cached_image_query_ms median={statistics.median(cached):.1f} min={min(cached):.1f} max={max(cached):.1f}")
    print("cached-image stages (median ms): " + " ".join(
        f"{name}={stage(name):.1f}" for name in ("preprocess_ms", "image_encode_ms", "generate_ms", "mask_decode_ms")))


if __name__ == "__main__":
    main()
