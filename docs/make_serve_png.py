"""Regenerate docs/serve.png: the web demo in headless chromium after two turns.

    PYTHONPATH=src python docs/make_serve_png.py
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from lisa.inference.pipeline import LisaPipeline
from lisa.serve.web import launch
from lisa.serve.worker import ModelWorker, WorkerPool

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TURNS = ["Show me every shape that is coloured like a ripe banana. Please output segmentation mask.",
         "Can you segment the green tree in this image?"]


def main() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = WorkerPool([ModelWorker(LisaPipeline.from_pretrained("lisa-tiny", device="cpu"))]).start()
    demo = launch(pool, port=port, examples_dir=ROOT / "examples", block=False)
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                tempfile.mkdtemp(), executable_path="/usr/bin/chromium", args=ARGS, headless=True,
                viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/", timeout=120_000)
            page.set_input_files("#image input[type=file]", str(ROOT / "examples" / "banana.jpg"))
            page.wait_for_selector("#image img", timeout=60_000)
            for turn, query in enumerate(TURNS):
                page.fill("#query textarea", query)
                page.click("#ask")
                page.wait_for_function(f"document.querySelectorAll('#chat .message-row').length >= {2 * turn + 2}",
                                       timeout=120_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ROOT / "docs" / "serve.png"), full_page=True)
            context.close()
    finally:
        demo.close()
        pool.stop()
        shutil.rmtree(demo.lisa_cache_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
