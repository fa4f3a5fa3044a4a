"""The web demo in a real browser: Debian's chromium driven by Playwright, against the Gradio
app served on 127.0.0.1 around the real worker and lisa-tiny."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

from _serve_helpers import free_port
from lisa.inference.pipeline import LisaPipeline
from lisa.serve.web import launch
from lisa.serve.worker import ModelWorker, WorkerPool

CHROMIUM = Path("/usr/bin/chromium")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RAIN = "What in this picture would keep you dry in the rain? Please output segmentation mask."

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs /usr/bin/chromium (.ci/run installs it)")]


@pytest.fixture(scope="module")
def demo():
    pipe = LisaPipeline.from_pretrained("lisa-tiny", device="cpu", dtype="float32")
    encoded: list[int] = []  # images encoded per pipeline call: the follow-up must reuse the cache
    original = pipe._encode_missing

    def counting(keys, arrays):
        encoded.append(sum(1 for k in keys if k not in pipe._cache))
        return original(keys, arrays)

    pipe._encode_missing = counting
    pool = WorkerPool([ModelWorker(pipe)]).start()
    port = free_port()
    app = launch(pool, port=port, examples_dir=EXAMPLES, block=False)
    yield f"http://127.0.0.1:{port}/", encoded, app.lisa_cache_dir
    app.close()
    pool.stop()
    shutil.rmtree(app.lisa_cache_dir, ignore_errors=True)


@pytest.fixture()
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tempfile.mkdtemp(prefix="lisa-chromium-"), executable_path=str(CHROMIUM), args=ARGS, headless=True,
            viewport={"width": 1280, "height": 1000})
        try:
            yield context.new_page()
        finally:
            context.close()


def _ask(page, query: str, answers_before: int) -> None:
    page.fill("#query textarea", query)
    page.click("#ask")
    page.wait_for_function(f"document.querySelectorAll('#chat .message-row').length >= {2 * (answers_before + 1)}",
                           timeout=120_000)


def test_upload_ask_see_the_overlay_toggle_it_and_ask_again(demo, page) -> None:
    url, encoded, cache_dir = demo
    page.goto(url, timeout=120_000)
    page.set_input_files("#image input[type=file]", str(EXAMPLES / "umbrella.jpg"))
    page.wait_for_selector("#image img", timeout=60_000)
    encoded.clear()
    # An explicit query, so that the mask is not empty (a mask judged absent is empty, and its
    # toggle would not change the overlay; lisa-tiny v8 and v10 give RAIN's umbrella an empty mask).
    _ask(page, "Can you segment the black octagon in this image?", 0)
    page.wait_for_selector("#overlay img", timeout=60_000)
    assert "[SEG]" in page.inner_text("#chat")
    first_overlay = page.get_attribute("#overlay img", "src")
    boxes = page.locator("#toggles input[type=checkbox]")
    assert boxes.count() >= 1 and boxes.first.is_checked()
    assert "masks_rle.json" in page.inner_text("#downloads").replace("\n", "")

    boxes.first.uncheck()  # the overlay is redrawn without that mask
    page.wait_for_function(f"document.querySelector('#overlay img').src !== {json.dumps(first_overlay)}", timeout=60_000)

    _ask(page, "Can you segment the grey diamond in this image?", 1)  # a follow-up about the same image
    assert page.locator("#chat .message-row").count() == 4
    assert encoded[0] == 1 and sum(encoded[1:]) == 0  # the second turn reused the cached embedding
    assert any(cache_dir.rglob("masks_rle.json"))  # downloads live in the private cache folder


def test_an_example_can_be_picked(demo, page) -> None:
    url, _, _ = demo
    page.goto(url, timeout=120_000)
    page.get_by_text("I am looking for something shaped like a stop sign").first.click()
    page.wait_for_function("document.querySelector('#query textarea').value.includes('stop sign')", timeout=60_000)
    page.wait_for_selector("#image img", timeout=60_000)
    page.click("#ask")
    page.wait_for_selector("#overlay img", timeout=120_000)
    assert "[SEG]" in page.inner_text("#chat")


def test_the_api_can_serve_the_demo_on_its_own_worker(page, tmp_path) -> None:
    """`lisa serve api --web`: the demo at /web behind a login with the API's token, and its
    questions run on the API's worker (they show in the API's batch metrics)."""
    import re

    import httpx

    from _serve_helpers import serve_in_thread
    from lisa.serve.api import ApiSettings, create_app
    from lisa.serve.web import mount

    pipe = LisaPipeline.from_pretrained("lisa-tiny", device="cpu", dtype="float32")
    pool = WorkerPool([ModelWorker(pipe)]).start()
    app = create_app(pool, ApiSettings(token="t0ken"))
    cache_dir = mount(app, pool, token="t0ken", examples_dir=EXAMPLES)

    def batches(url: str) -> float:
        text = httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer t0ken"}).text
        return float(re.search(r"^lisa_batch_size_count (\S+)$", text, re.M).group(1))

    try:
        with serve_in_thread(app) as url:
            before = batches(url)
            login = f"{url}/web/login"
            assert httpx.post(login, data={"username": "me", "password": "wrong"}).status_code >= 400
            assert httpx.post(login, data={"username": "me", "password": "t0ken"}).status_code == 200
            page.goto(f"{url}/web/", timeout=120_000)
            page.fill("input[type=password]", "wrong")
            page.locator("input").first.fill("me")
            page.keyboard.press("Enter")
            page.wait_for_timeout(1500)
            assert page.locator("#image").count() == 0  # still at the login
            page.locator("input").first.fill("me")
            page.fill("input[type=password]", "t0ken")
            page.keyboard.press("Enter")
            page.wait_for_selector("#image input[type=file]", state="attached", timeout=120_000)
            page.set_input_files("#image input[type=file]", str(EXAMPLES / "umbrella.jpg"))
            page.wait_for_selector("#image img", timeout=60_000)
            _ask(page, RAIN, 0)
            page.wait_for_selector("#overlay img", timeout=60_000)
            assert batches(url) == before + 1
    finally:
        pool.stop()
        shutil.rmtree(cache_dir, ignore_errors=True)
