"""The model worker: micro-batching into one pipeline call, results back to their own job,
a bounded queue, cancelled jobs skipped; and the pipeline's image cache under threads."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from _serve_helpers import GatedPipeline
from lisa.errors import LisaError
from lisa.inference.pipeline import LisaPipeline
from lisa.serve.worker import ModelWorker, QueueFull, WorkerPool

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
QUERIES = ["segment the red circle", "where is the star?", "a", "what is the long query here, please"]


@pytest.fixture()
def images(rng):
    return [rng.integers(0, 255, (32 + 8 * i, 48 - 4 * i, 3), dtype=np.uint8) for i in range(4)]


@pytest.fixture(scope="module")
def lisa_tiny():
    return LisaPipeline.from_pretrained("lisa-tiny", device="cpu", dtype="float32")


def examples() -> list[tuple[np.ndarray, str]]:
    """The four shipped examples, each at its own size (so a mix-up shows in the mask shape too)."""
    pairs = []
    for index, example in enumerate(json.loads((EXAMPLES / "examples.json").read_text())):
        image = Image.open(EXAMPLES / example["image"]).convert("RGB").resize((256 + 32 * index, 256 - 16 * index))
        pairs.append((np.asarray(image), example["query"]))
    return pairs


def _gated_worker(tiny_pipeline, **kwargs):
    gated = GatedPipeline(tiny_pipeline)
    sizes: list[int] = []
    worker = ModelWorker(gated, on_batch=lambda size, seconds: sizes.append(size), **kwargs).start()
    return gated, worker, sizes


def test_queued_jobs_run_as_one_batch_and_each_gets_its_own_result(lisa_tiny) -> None:
    pairs = examples()
    expected = [lisa_tiny(image, query) for image, query in pairs]
    gated, worker, sizes = _gated_worker(lisa_tiny, max_batch=8, batch_window_s=0.0)
    try:
        blocker = worker.submit(*pairs[0])
        assert gated.entered.wait(10)  # the worker is inside a pipeline call; the rest queue up
        futures = [worker.submit(image, query) for image, query in reversed(pairs)]
        gated.gate.set()
        results = [f.result(60) for f in futures][::-1]
        blocker.result(60)
    finally:
        worker.stop()
    assert sizes == [1, 4]  # the four queued jobs went through ONE pipeline call
    for got, want, (image, _) in zip(results, expected, pairs):
        assert got.text == want.text and len(got.masks) == len(want.masks)
        assert got.masks.shape == want.masks.shape and got.masks.shape[1:] == image.shape[:2]
        assert got.masks.size == 0 or (got.masks == want.masks).mean() > 0.999  # (a declined example: no mask)


def test_max_batch_one_turns_batching_off(tiny_pipeline, images) -> None:
    gated, worker, sizes = _gated_worker(tiny_pipeline, max_batch=1)
    try:
        futures = [worker.submit(image, query, max_new_tokens=4) for image, query in zip(images, QUERIES)]
        gated.gate.set()
        [f.result(30) for f in futures]
    finally:
        worker.stop()
    assert sizes == [1, 1, 1, 1]


def test_jobs_with_different_token_budgets_are_not_mixed(tiny_pipeline, images) -> None:
    gated, worker, sizes = _gated_worker(tiny_pipeline, max_batch=8, batch_window_s=0.0)
    try:
        blocker = worker.submit(images[0], "x", max_new_tokens=2)
        assert gated.entered.wait(10)
        short = worker.submit(images[1], QUERIES[3], max_new_tokens=1)
        long = worker.submit(images[2], QUERIES[3], max_new_tokens=12)
        gated.gate.set()
        blocker.result(30)
        assert short.result(30).text == tiny_pipeline(images[1], QUERIES[3], max_new_tokens=1).text
        assert long.result(30).text == tiny_pipeline(images[2], QUERIES[3], max_new_tokens=12).text
    finally:
        worker.stop()
    assert sizes == [1, 1, 1]


def test_a_bad_job_fails_alone(tiny_pipeline, images) -> None:
    gated, worker, _ = _gated_worker(tiny_pipeline, max_batch=8, batch_window_s=0.0)
    try:
        blocker = worker.submit(images[0], "x", max_new_tokens=2)
        assert gated.entered.wait(10)
        good = worker.submit(images[1], QUERIES[1], max_new_tokens=4)
        bad = worker.submit(np.zeros((4, 4, 5), dtype=np.uint8), QUERIES[1], max_new_tokens=4)
        gated.gate.set()
        blocker.result(30)
        assert good.result(30).text == tiny_pipeline(images[1], QUERIES[1], max_new_tokens=4).text
        with pytest.raises(LisaError, match="expected an image array"):
            bad.result(30)
    finally:
        worker.stop()


def test_a_full_queue_refuses_instead_of_waiting_and_cancelled_jobs_are_skipped(tiny_pipeline, images) -> None:
    gated, worker, sizes = _gated_worker(tiny_pipeline, max_batch=8, batch_window_s=0.0, max_queue=2)
    try:
        blocker = worker.submit(images[0], "x", max_new_tokens=2)
        assert gated.entered.wait(10)
        kept = worker.submit(images[1], "y", max_new_tokens=2)
        dropped = worker.submit(images[2], "z", max_new_tokens=2)
        with pytest.raises(QueueFull):
            worker.submit(images[3], "w", max_new_tokens=2)
        assert dropped.cancel()
        gated.gate.set()
        blocker.result(30), kept.result(30)
    finally:
        worker.stop()
    assert sizes == [1, 1]  # the cancelled job never reached the pipeline


def test_pool_sends_work_to_the_shortest_queue_and_refuses_when_all_are_full(tiny_pipeline, images) -> None:
    gates = [GatedPipeline(tiny_pipeline), GatedPipeline(tiny_pipeline)]
    pool = WorkerPool([ModelWorker(g, max_queue=1, batch_window_s=0.0) for g in gates]).start()
    try:
        first = pool.submit(images[0], "a", max_new_tokens=2)
        second = pool.submit(images[1], "b", max_new_tokens=2)
        assert gates[0].entered.wait(10) and gates[1].entered.wait(10)  # one job each: both workers busy
        queued = [pool.submit(images[2], "c", max_new_tokens=2), pool.submit(images[3], "d", max_new_tokens=2)]
        assert pool.queue_depth == 2 and [w.queue_depth for w in pool.workers] == [1, 1]
        with pytest.raises(QueueFull):
            pool.submit(images[3], "e", max_new_tokens=2)
        for gate in gates:
            gate.gate.set()
        [f.result(30) for f in [first, second, *queued]]
    finally:
        pool.stop()


def test_image_cache_is_safe_under_concurrent_callers(tiny_model_dir, rng) -> None:
    pipe = LisaPipeline.from_pretrained(tiny_model_dir, device="cpu", dtype="float32")
    pipe.cache_size = 1  # every call by another thread evicts the previous image
    images = [rng.integers(0, 255, (24, 24, 3), dtype=np.uint8) for _ in range(4)]
    errors: list[BaseException] = []

    def hammer(image) -> None:
        try:
            for _ in range(6):
                pipe(image, "q", answers="[SEG].")
        except BaseException as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=hammer, args=(image,)) for image in images]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    assert len(pipe._cache) <= 1
