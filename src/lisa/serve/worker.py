"""One model worker per device: a bounded queue in front of a LisaPipeline, micro-batched.

Front ends (the HTTP API, the web demo) submit jobs from any thread and get a Future back.
The worker's own thread takes the first waiting job, gathers whatever else arrives within
``batch_window_s`` (up to ``max_batch`` jobs) and runs them as ONE pipeline call, which pads
the queries together and encodes each distinct image once. Each result goes back to the
Future of the job it came from, in order.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from lisa.errors import LisaError
from lisa.inference.pipeline import LisaPipeline, SegmentResult, Turns


class QueueFull(Exception):
    """The worker's queue holds ``max_queue`` jobs already; try again later."""


@dataclass
class Job:
    image: np.ndarray  # RGB uint8 [H, W, 3], already decoded and checked by the front end
    query: str
    history: Turns = field(default_factory=list)
    max_new_tokens: int = 64
    future: Future = field(default_factory=Future)


class ModelWorker:
    """Owns ``pipeline`` (and so its device); ``max_batch=1`` turns micro-batching off."""

    def __init__(self, pipeline: LisaPipeline, max_batch: int = 8, batch_window_s: float = 0.01,
                 max_queue: int = 64, on_batch: Callable[[int, float], None] | None = None) -> None:
        if max_batch < 1 or max_queue < 1 or batch_window_s < 0:
            raise LisaError("max_batch and max_queue must be >= 1 and batch_window_s >= 0")
        self.pipeline = pipeline
        self.max_batch = max_batch
        self.batch_window_s = batch_window_s
        self.max_queue = max_queue
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._loop, name="lisa-model-worker", daemon=True)
        self.on_batch = on_batch  # called with (jobs in the call, seconds) after each pipeline call

    # ---- front-end side ----------------------------------------------------------------
    def start(self) -> "ModelWorker":
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the jobs already queued, then end the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def submit(self, image: np.ndarray, query: str, history: Turns | None = None,
               max_new_tokens: int = 64) -> Future:
        """Queue one job; raises QueueFull instead of waiting when the queue is at its bound."""
        if not self._thread.is_alive():
            raise LisaError("the model worker is not running")
        job = Job(image, query, list(history or []), max_new_tokens)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self.max_queue} requests are already waiting") from None
        return job.future

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    # ---- worker side -------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            self._run(batch)
            if stop:
                return

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        """``first`` plus what arrives within the window, at most max_batch jobs."""
        batch = [first]
        deadline = time.monotonic() + self.batch_window_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return batch, True
            batch.append(job)
        return batch, False

    def _run(self, batch: list[Job]) -> None:
        # A job whose caller gave up (timeout, disconnect) was cancelled: skip it.
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        # One pipeline call takes one token budget: one call per distinct max_new_tokens.
        for budget in sorted({job.max_new_tokens for job in live}):
            group = [job for job in live if job.max_new_tokens == budget]
            start = time.perf_counter()
            try:
                results = self.pipeline([j.image for j in group], [j.query for j in group],
                                        history=[j.history for j in group], max_new_tokens=budget)
            except Exception:  # noqa: BLE001 - find which job failed: rerun them one by one
                results = None
            if self.on_batch is not None:
                self.on_batch(len(group), time.perf_counter() - start)
            if results is None:
                for job in group:
                    _run_alone(self.pipeline, job)
                continue
            for job, result in zip(group, results, strict=True):
                job.future.set_result(result)


def _run_alone(pipeline: LisaPipeline, job: Job) -> None:
    try:
        result: SegmentResult = pipeline(job.image, job.query, history=job.history, max_new_tokens=job.max_new_tokens)
    except Exception as error:  # noqa: BLE001 - handed to the caller, who turns it into a response
        job.future.set_exception(error)
        return
    job.future.set_result(result)


class WorkerPool:
    """One ModelWorker per device; a job goes to the worker with the shortest queue."""

    def __init__(self, workers: Sequence[ModelWorker]) -> None:
        if not workers:
            raise LisaError("a worker pool needs at least one worker")
        self.workers = list(workers)

    def start(self) -> "WorkerPool":
        for worker in self.workers:
            worker.start()
        return self

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def submit(self, image: np.ndarray, query: str, history: Turns | None = None,
               max_new_tokens: int = 64) -> Future:
        for worker in sorted(self.workers, key=lambda w: w.queue_depth):
            try:
                return worker.submit(image, query, history, max_new_tokens)
            except QueueFull:
                continue
        raise QueueFull(f"all {len(self.workers)} worker queue(s) are full")

    @property
    def queue_depth(self) -> int:
        return sum(worker.queue_depth for worker in self.workers)

    @property
    def capacity(self) -> int:
        return sum(worker.max_queue for worker in self.workers)
