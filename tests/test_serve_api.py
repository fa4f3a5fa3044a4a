"""The HTTP API over real HTTP: a uvicorn server on 127.0.0.1 per configuration, httpx as the
client. Every endpoint, and every limit with its own status code."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from _serve_helpers import GatedPipeline, free_port, serve_in_thread
from lisa.inference.pipeline import LisaPipeline
from lisa.serve.api import ApiSettings, create_app
from lisa.serve.worker import ModelWorker, WorkerPool

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
UMBRELLA = (EXAMPLES / "umbrella.jpg").read_bytes()
RAIN = "What in this picture would keep you dry in the rain? Please output segmentation mask."
BANANA_IMAGE = (EXAMPLES / "banana.jpg").read_bytes()  # lisa-tiny's mask there is large (1774 px), not empty
BANANA = "Show me every shape that is coloured like a ripe banana. Please output segmentation mask."


@pytest.fixture(scope="module")
def lisa_tiny():
    return LisaPipeline.from_pretrained("lisa-tiny", device="cpu", dtype="float32")


def _server(pipeline, **settings):
    """A real server around ``pipeline``; ``max_queue`` / ``max_batch`` go to the worker."""
    worker_options = {k: settings.pop(k) for k in ("max_queue", "max_batch") if k in settings}
    pool = WorkerPool([ModelWorker(pipeline, batch_window_s=0.005, **worker_options)]).start()
    app = create_app(pool, ApiSettings(**settings))

    class Running:
        def __enter__(self):
            self.context = serve_in_thread(app)
            self.url = self.context.__enter__()
            return self

        def __exit__(self, *exc):
            self.context.__exit__(*exc)
            pool.stop()

    return Running()


@pytest.fixture(scope="module")
def server(lisa_tiny):
    with _server(lisa_tiny, max_conversations=2) as running:
        yield running.url


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 30, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def _decode(record: dict) -> np.ndarray:
    rle = {"size": record["rle"]["size"], "counts": record["rle"]["counts"].encode()}
    return mask_utils.decode(rle).astype(bool)


# ---- endpoints ------------------------------------------------------------------------
def test_segment_multipart_returns_the_pipelines_answer_and_masks_as_rle(server, lisa_tiny) -> None:
    want = lisa_tiny(EXAMPLES / "banana.jpg", BANANA)
    response = httpx.post(f"{server}/v1/segment", files={"image": ("s.jpg", BANANA_IMAGE, "image/jpeg")},
                          data={"query": BANANA}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["text"] == want.text and "[SEG]" in body["text"]
    assert body["image_size"] == [256, 256] and "overlay_png_base64" not in body
    assert len(body["masks"]) == len(want.masks) >= 1 and want.masks.any()
    for record, mask, score in zip(body["masks"], want.masks, want.scores):
        decoded = _decode(record)
        assert (decoded == mask).mean() > 0.999
        ys, xs = np.nonzero(decoded)
        assert record["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert record["area"] == decoded.sum()
        assert record["score"] == pytest.approx(float(score), abs=1e-3)


def test_segment_reports_an_empty_mask_as_such(server, lisa_tiny) -> None:
    """lisa-tiny's mask for a red heart on a blank white image is empty: the API says so
    (area 0, bbox zeros) instead of failing or inventing a box."""
    white = np.full((256, 256, 3), 255, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(white).save(buffer, format="PNG")
    want = lisa_tiny(white, "the red heart")
    assert len(want.masks) == 1 and not want.masks.any(), "precondition: pick an input whose mask is empty"
    body = httpx.post(f"{server}/v1/segment", json={"image_base64": _b64(buffer.getvalue()), "query": "the red heart"},
                      timeout=60).json()
    (record,) = body["masks"]
    assert record["area"] == 0 and record["bbox"] == [0, 0, 0, 0] and not _decode(record).any()


def test_segment_json_base64_with_overlay(server) -> None:
    response = httpx.post(f"{server}/v1/segment", json={"image_base64": _b64(BANANA_IMAGE), "query": BANANA, "overlay": True},
                          timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    overlay = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["overlay_png_base64"]))).convert("RGB"))
    original = np.asarray(Image.open(io.BytesIO(BANANA_IMAGE)).convert("RGB"))
    assert overlay.shape == original.shape
    inside = _decode(body["masks"][0])
    assert inside.sum() > 500
    changed = np.abs(overlay.astype(int) - original).sum(-1) > 0
    assert changed[inside].mean() > 0.9  # the mask is tinted ...
    assert changed[~inside].mean() < 0.1  # ... the rest is left alone (but for the outline)


def test_chat_keeps_the_conversation_and_its_history(server, lisa_tiny) -> None:
    first = httpx.post(f"{server}/v1/chat", json={"image_base64": _b64(UMBRELLA), "query": RAIN}, timeout=60)
    assert first.status_code == 200, first.text
    conversation = first.json()["conversation_id"]
    assert first.json()["turn"] == 0
    follow_up = "Can you segment the grey diamond in this image?"
    second = httpx.post(f"{server}/v1/chat", json={"conversation_id": conversation, "query": follow_up}, timeout=60)
    assert second.status_code == 200, second.text
    assert second.json()["turn"] == 1 and second.json()["conversation_id"] == conversation
    want = lisa_tiny(EXAMPLES / "umbrella.jpg", follow_up, history=[(RAIN, first.json()["text"])])
    assert second.json()["text"] == want.text


def test_chat_errors(server) -> None:
    unknown = httpx.post(f"{server}/v1/chat", json={"conversation_id": "nope", "query": "hi"}, timeout=30)
    assert unknown.status_code == 404 and "start a new conversation" in unknown.json()["detail"]
    no_image = httpx.post(f"{server}/v1/chat", json={"query": "hi"}, timeout=30)
    assert no_image.status_code == 422 and "image_base64" in no_image.json()["detail"]
    first = httpx.post(f"{server}/v1/chat", json={"image_base64": _b64(UMBRELLA), "query": "hi"}, timeout=60).json()
    both = httpx.post(f"{server}/v1/chat", json={"conversation_id": first["conversation_id"],
                                                 "image_base64": _b64(UMBRELLA), "query": "hi"}, timeout=30)
    assert both.status_code == 422 and "keeps its first image" in both.json()["detail"]


def test_conversation_store_is_bounded(server) -> None:
    """The module's server keeps 2 conversations: a third pushes out the least recently used."""
    ids = [httpx.post(f"{server}/v1/chat", json={"image_base64": _b64(UMBRELLA), "query": "hi", "max_new_tokens": 2},
                      timeout=60).json()["conversation_id"] for _ in range(3)]
    oldest = httpx.post(f"{server}/v1/chat", json={"conversation_id": ids[0], "query": "again"}, timeout=30)
    newest = httpx.post(f"{server}/v1/chat", json={"conversation_id": ids[2], "query": "again", "max_new_tokens": 2},
                        timeout=60)
    assert oldest.status_code == 404 and newest.status_code == 200
    assert httpx.get(f"{server}/healthz").json()["conversations"] == 2


def test_conversations_expire_after_their_ttl(lisa_tiny) -> None:
    with _server(lisa_tiny, conversation_ttl_s=0.5) as running:
        first = httpx.post(f"{running.url}/v1/chat", json={"image_base64": _b64(UMBRELLA), "query": "hi",
                                                           "max_new_tokens": 2}, timeout=60).json()
        time.sleep(1.0)
        late = httpx.post(f"{running.url}/v1/chat", json={"conversation_id": first["conversation_id"], "query": "hi"},
                          timeout=30)
    assert late.status_code == 404


def test_healthz_and_metrics(server) -> None:
    health = httpx.get(f"{server}/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["workers"] == 1
    httpx.post(f"{server}/v1/segment", json={"image_base64": _b64(UMBRELLA), "query": RAIN}, timeout=60)
    metrics = httpx.get(f"{server}/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    counts = [line for line in metrics.text.splitlines()
              if line.startswith('lisa_requests_total{endpoint="/v1/segment",status="200"}')]
    assert counts and float(counts[0].split()[-1]) >= 1
    assert "lisa_batch_size_count" in metrics.text and "lisa_queue_depth" in metrics.text


def test_openapi_schema_names_both_body_kinds(server) -> None:
    schema = httpx.get(f"{server}/openapi.json").json()
    body = schema["paths"]["/v1/segment"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert "SegmentRequest" in schema["components"]["schemas"]
    assert {"/v1/segment", "/v1/chat", "/healthz", "/metrics"} <= set(schema["paths"])


# ---- limits ---------------------------------------------------------------------------
def test_input_limits(lisa_tiny) -> None:
    with _server(lisa_tiny, max_upload_bytes=20_000, max_pixels=300 * 300, max_query_chars=50) as running:
        url = f"{running.url}/v1/segment"
        big = httpx.post(url, files={"image": ("big.png", os.urandom(30_000))}, data={"query": "x"}, timeout=30)
        assert big.status_code == 413 and "20,000" in big.json()["detail"]
        pixels = httpx.post(url, files={"image": ("wide.png", _png(400, 300))}, data={"query": "x"}, timeout=30)
        assert pixels.status_code == 413 and "400x300" in pixels.json()["detail"]
        pixels_json = httpx.post(url, json={"image_base64": _b64(_png(301, 300)), "query": "x"}, timeout=30)
        assert pixels_json.status_code == 413
        long_query = httpx.post(url, json={"image_base64": _b64(_png(8, 8)), "query": "y" * 51}, timeout=30)
        assert long_query.status_code == 422 and "limit of 50" in long_query.json()["detail"]
        not_image = httpx.post(url, json={"image_base64": _b64(b"not an image"), "query": "x"}, timeout=30)
        assert not_image.status_code == 422 and "cannot read the image" in not_image.json()["detail"]
        bad_b64 = httpx.post(url, json={"image_base64": "%%%", "query": "x"}, timeout=30)
        assert bad_b64.status_code == 422 and "base64" in bad_b64.json()["detail"]
        missing = httpx.post(url, files={"image": ("a.png", _png(8, 8))}, timeout=30)
        assert missing.status_code == 422 and "'query'" in missing.json()["detail"]
        tokens = httpx.post(url, json={"image_base64": _b64(_png(8, 8)), "query": "x", "max_new_tokens": 100_000})
        assert tokens.status_code == 422
        wrong_type = httpx.post(url, content=b"x", headers={"content-type": "text/plain"}, timeout=30)
        assert wrong_type.status_code == 415
        small = httpx.post(url, files={"image": ("ok.png", _png(300, 300))}, data={"query": "x", "max_new_tokens": "4"},
                           timeout=60)
        assert small.status_code == 200, small.text  # exactly at the limits is fine


def test_a_full_queue_answers_429_with_retry_after(lisa_tiny) -> None:
    gated = GatedPipeline(lisa_tiny)
    with _server(gated, max_queue=2, max_batch=1) as running:
        url = f"{running.url}/v1/segment"
        body = {"image_base64": _b64(_png(16, 16)), "query": "x", "max_new_tokens": 2}
        with httpx.Client(timeout=60) as client:
            import concurrent.futures as cf

            with cf.ThreadPoolExecutor(3) as pool:
                running_job = pool.submit(client.post, url, json=body)
                assert gated.entered.wait(30)  # the worker holds one job ...
                queued = [pool.submit(client.post, url, json=body) for _ in range(2)]
                deadline = time.monotonic() + 30  # ... and two wait in the queue
                while client.get(f"{running.url}/healthz").json()["queue_depth"] < 2:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                refused = client.post(url, json=body)
                gated.gate.set()
                done = [running_job.result(), *[q.result() for q in queued]]
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert [r.status_code for r in done] == [200, 200, 200]


def test_a_slow_request_answers_504(lisa_tiny) -> None:
    gated = GatedPipeline(lisa_tiny)
    with _server(gated, request_timeout_s=0.5) as running:
        response = httpx.post(f"{running.url}/v1/segment", json={"image_base64": _b64(_png(16, 16)), "query": "x"},
                              timeout=30)
        gated.gate.set()
    assert response.status_code == 504 and "0.5 s" in response.json()["detail"]


def test_bearer_token(lisa_tiny) -> None:
    with _server(lisa_tiny, token="s3cret") as running:
        body = {"image_base64": _b64(_png(16, 16)), "query": "x", "max_new_tokens": 2}
        url = f"{running.url}/v1/segment"
        missing = httpx.post(url, json=body, timeout=30)
        wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer s3cre"}, timeout=30)
        right = httpx.post(url, json=body, headers={"Authorization": "Bearer s3cret"}, timeout=60)
        metrics = httpx.get(f"{running.url}/metrics")
        health = httpx.get(f"{running.url}/healthz")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 401 and metrics.status_code == 401
    assert right.status_code == 200 and health.status_code == 200


# ---- the command ----------------------------------------------------------------------
@pytest.mark.slow  # a fresh interpreter imports torch, transformers and FastAPI
def test_serve_api_command_binds_localhost_and_reads_the_token_from_the_environment(tiny_model_dir) -> None:
    port = free_port()
    env = {**os.environ, "LISA_API_TOKEN": "from-env", "PYTHONPATH": os.pathsep.join(sys.path)}
    process = subprocess.Popen([sys.executable, "-m", "lisa.cli", "serve", "api", "--model", str(tiny_model_dir),
                                "--device", "cpu", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.25)
        assert health.json()["model"] == str(tiny_model_dir)
        assert httpx.get(f"http://127.0.0.1:{port}/metrics").status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer from-env"}).status_code == 200
        assert _listening_addresses(port) == ["127.0.0.1"]
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    assert "from-env" not in output  # the token is not printed


def _listening_addresses(port: int) -> list[str]:
    """IPv4 addresses with a socket listening on ``port`` (Linux: /proc/net/tcp, state 0A)."""
    addresses = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        host, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:
            addresses.append(".".join(str(b) for b in reversed(bytes.fromhex(host))))
    return addresses


def test_a_qwen_vl_with_sam2_model_serves(tmp_path: Path) -> None:
    """Another pairing behind the same API: a tiny Qwen2.5-VL + SAM 2 (dynamic image tokens),
    two concurrent requests of different sizes (one micro-batch), [SEG] forced by an lm_head bias."""
    import concurrent.futures as cf

    import torch

    from lisa.model.build import ModelSize, Sam2Size, build_model, save_bundle

    torch.manual_seed(0)
    save_bundle(tmp_path / "model", *build_model(ModelSize(vlm="qwen2_5_vl", sam2=Sam2Size())))
    pipeline = LisaPipeline.from_pretrained(tmp_path / "model", device="cpu", dtype="float32", threads=None)
    bias = torch.zeros(pipeline.model.vlm.lm_head.out_features)
    bias[pipeline.model.config.seg_token_id] = 1e4
    pipeline.model.vlm.lm_head.bias = torch.nn.Parameter(bias, requires_grad=False)
    sizes = [(60, 40), (48, 64)]  # (width, height)
    with _server(pipeline) as running, cf.ThreadPoolExecutor(2) as threads:
        def post(size: tuple[int, int]) -> httpx.Response:
            return httpx.post(f"{running.url}/v1/segment", json={"image_base64": _b64(_png(*size)), "query": "the thing",
                                                                "max_new_tokens": 2}, timeout=60)

        responses = list(threads.map(post, sizes))
    for (width, height), response in zip(sizes, responses):
        assert response.status_code == 200, response.text
        masks = response.json()["masks"]
        assert len(masks) == 2 and all(_decode(m).shape == (height, width) for m in masks)
