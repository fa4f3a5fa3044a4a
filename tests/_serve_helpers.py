"""Real servers for the serve tests: uvicorn on 127.0.0.1 and a free port, in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator

import uvicorn


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(app) -> Iterator[str]:
    """Run ``app`` over real HTTP; yields its base URL and stops it afterwards."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


class GatedPipeline:
    """The real pipeline behind a gate: a call announces itself (``entered``) and waits until
    the test opens ``gate``, so a test can hold the worker busy for as long as it needs."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, *args, **kwargs):
        self.entered.set()
        self.gate.wait(30)
        return self.pipeline(*args, **kwargs)
