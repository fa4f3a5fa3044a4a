"""Requests/s and latency of `lisa serve api`, micro-batching on and off, same model, same load.

    python benchmarks/bench_serve.py --model lisa-tiny --clients 16 --seconds 30

One process: the real API (uvicorn on 127.0.0.1, a free port) around ONE model worker, and
``--clients`` threads that each send POST /v1/segment (JSON, base64 PNG) back to back for
``--seconds``, cycling through the shipped examples (a new image per request: both image
encoders run). The same load runs twice: ``--max-batch`` jobs per pipeline call within a
``--window-ms`` window ("batched"), then one job per call ("unbatched"). Latency is measured
by the client, from sending to the full response. Set torch's threads with --threads (0 = the
default, all cores).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="lisa-tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0, help="load duration per configuration")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--window-ms", type=float, default=10.0)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    return parser.parse_args()


def bodies(max_new_tokens: int) -> list[dict]:
    from PIL import Image

    out = []
    for index, example in enumerate(json.loads((ROOT / "examples" / "examples.json").read_text())):
        image = Image.open(ROOT / "examples" / example["image"]).convert("RGB")
        for variant in range(16):  # 64 distinct images, more than the image cache holds: no cache hits
            array = np.asarray(image).copy()
            array[0, 0] = (variant * 15 + index, 0, 0)
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="PNG")
            out.append({"image_base64": base64.b64encode(buffer.getvalue()).decode(), "query": example["query"],
                        "max_new_tokens": max_new_tokens})
    return out


def run_load(url: str, clients: int, seconds: float, payloads: list[dict]) -> tuple[list[float], int, float]:
    import httpx

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(index: int) -> None:
        with httpx.Client(timeout=300) as http:
            step = index
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                response = http.post(f"{url}/v1/segment", json=payloads[step % len(payloads)])
                elapsed = time.perf_counter() - start
                with lock:
                    if response.status_code == 200:
                        latencies.append(elapsed)
                    else:
                        errors[0] += 1
                step += clients

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors[0], time.perf_counter() - start


def main() -> None:
    args = parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT / "tests"))
    from _serve_helpers import serve_in_thread
    from lisa.inference.pipeline import LisaPipeline
    from lisa.serve.api import ApiSettings, create_app
    from lisa.serve.worker import ModelWorker, WorkerPool

    pipe = LisaPipeline.from_pretrained(args.model, device=args.device, dtype="float32")
    payloads = bodies(args.max_new_tokens)
    print(f"model {args.model} on {args.device}, torch threads {torch.get_num_threads()}, {args.clients} clients, "
          f"{args.seconds:g} s per configuration, max_new_tokens {args.max_new_tokens}")
    print(f"{'configuration':<28} {'requests':>8} {'errors':>6} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'jobs/call':>9}")
    for name, max_batch in ((f"batched (<= {args.max_batch}, {args.window_ms:g} ms)", args.max_batch),
                            ("unbatched (1 per call)", 1)):
        sizes: list[int] = []
        worker = ModelWorker(pipe, max_batch=max_batch, batch_window_s=args.window_ms / 1000.0,
                             max_queue=4 * args.clients)
        pool = WorkerPool([worker]).start()
        app = create_app(pool, ApiSettings(request_timeout_s=300))
        worker.on_batch = lambda size, seconds: sizes.append(size)  # after create_app, which sets its own
        pipe.clear_cache()
        with serve_in_thread(app) as url:
            run_load(url, args.clients, min(3.0, args.seconds), payloads)  # warm-up
            sizes.clear()
            latencies, errors, elapsed = run_load(url, args.clients, args.seconds, payloads)
        pool.stop()
        ms = sorted(1000 * t for t in latencies)
        p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))] if ms else float("nan")
        print(f"{name:<28} {len(ms):>8} {errors:>6} {len(ms) / elapsed:>7.2f} {statistics.median(ms):>8.0f} "
              f"{p95:>8.0f} {statistics.mean(sizes) if sizes else 0:>9.2f}")


if __name__ == "__main__":
    main()
