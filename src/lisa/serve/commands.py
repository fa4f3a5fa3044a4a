"""`lisa serve api` and `lisa serve web`."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

TOKEN_ENV = "LISA_API_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="serve the model: an HTTP API or a web demo",
                                  description="Serve the model: `lisa serve api` (HTTP) or `lisa serve web` (Gradio).")
    kinds = serve.add_subparsers(dest="serve_command", required=True, metavar="KIND")

    api = kinds.add_parser(
        "api", help="HTTP API (FastAPI): /v1/segment, /v1/chat, /healthz, /metrics; docs at /docs",
        description="Serve the model over HTTP: POST /v1/segment (multipart upload or JSON with base64), POST "
                    "/v1/chat (conversations kept in memory), GET /healthz, GET /metrics (Prometheus); the "
                    "OpenAPI schema at /openapi.json. Requests are micro-batched by one model worker per device. "
                    "See docs/serving.md for the limits and their status codes.",
        epilog="example:\n  lisa serve api --port 8000\n  curl -F image=@examples/umbrella.jpg "
               "-F 'query=the umbrella' http://127.0.0.1:8000/v1/segment",
    )
    _common(api, port=8000)
    api.add_argument("--token", default=None,
                     help=f"require 'Authorization: Bearer TOKEN' (default: ${TOKEN_ENV} if set, else no token)")
    api.add_argument("--max-upload-mb", type=float, default=10.0, help="largest request body (default 10)")
    api.add_argument("--max-pixels", type=int, default=4096 * 4096, help="largest image, width x height (default 4096^2)")
    api.add_argument("--max-query-chars", type=int, default=2000, help="longest query (default 2000 characters)")
    api.add_argument("--timeout-s", type=float, default=60.0, help="per-request limit, queueing included; then 504")
    api.add_argument("--max-conversations", type=int, default=64, help="chat conversations kept in memory")
    api.add_argument("--conversation-ttl-s", type=float, default=900.0, help="a conversation unused this long is forgotten")
    api.add_argument("--web", action="store_true",
                     help="also serve the web demo at /web on the same model worker (with --token: a login page)")
    api.add_argument("--examples", type=Path, default=None, help="examples folder for --web (see `lisa serve web`)")
    api.set_defaults(run=run_api)

    web = kinds.add_parser(
        "web", help="web demo (Gradio): upload or pick an image, ask, see and download the masks",
        description="A Gradio web demo: upload or pick an example image, ask, see the answer and each mask in its "
                    "own colour (toggles per mask), ask follow-up questions, download the masks (PNG, COCO RLE).",
        epilog="example:\n  lisa serve web --port 7860   # then open http://127.0.0.1:7860",
    )
    _common(web, port=7860)
    web.add_argument("--examples", type=Path, default=None,
                     help="folder with examples.json and its images (default: the repository's examples/)")
    web.set_defaults(run=run_web)



def _common(parser: argparse.ArgumentParser, port: int) -> None:
    parser.add_argument("--model", default="lisa-tiny", help="model folder, shipped name or Hugging Face hub id (default: lisa-tiny)")
    parser.add_argument("--vision-tower", default=None, help="CLIP folder, for a released LISA checkpoint")
    parser.add_argument("--device", action="append", default=None,
                        help="auto, cpu, cuda:0, ...; repeat for one model worker per device (default: auto)")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=port, help=f"port to listen on (default {port})")
    parser.add_argument("--max-batch", type=int, default=8, help="jobs per pipeline call; 1 turns micro-batching off")
    parser.add_argument("--batch-window-ms", type=float, default=10.0, help="how long the worker waits to fill a batch")
    parser.add_argument("--queue-size", type=int, default=64, help="jobs waiting per worker; beyond it: 429 / busy")
    parser.add_argument("--log-requests", action="store_true",
                        help="log every request (query text, image size); off by default, nothing a user sends is logged")


def _require_serve_extra() -> None:
    import importlib.util

    from lisa.errors import LisaError

    missing = [name for name in ("fastapi", "uvicorn", "prometheus_client", "python_multipart", "gradio")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise LisaError(f"serving needs {', '.join(missing)}: pip install 'lisa-seg[serve]'")


def build_workers(args: argparse.Namespace):
    from lisa.inference.pipeline import LisaPipeline
    from lisa.serve.worker import ModelWorker, WorkerPool

    workers = []
    for device in args.device or ["auto"]:
        pipe = LisaPipeline.from_pretrained(args.model, device=device, dtype=args.dtype, vision_tower=args.vision_tower)
        workers.append(ModelWorker(pipe, max_batch=args.max_batch, batch_window_s=args.batch_window_ms / 1000.0,
                                   max_queue=args.queue_size))
    return WorkerPool(workers)


def run_api(args: argparse.Namespace) -> int:
    _require_serve_extra()
    import uvicorn

    from lisa.serve.api import ApiSettings, create_app

    settings = ApiSettings(
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=args.max_pixels,
        max_query_chars=args.max_query_chars, request_timeout_s=args.timeout_s,
        max_conversations=args.max_conversations, conversation_ttl_s=args.conversation_ttl_s,
        token=args.token or os.environ.get(TOKEN_ENV) or None, log_requests=args.log_requests,
    )
    workers = build_workers(args).start()
    app = create_app(workers, settings, model_name=str(args.model))
    web_cache = None
    if args.web:
        from lisa.serve.web import mount

        web_cache = mount(app, workers, model_name=str(args.model), token=settings.token,
                          examples_dir=args.examples, log_requests=args.log_requests)
    print(f"lisa serve api: {args.model} on http://{args.host}:{args.port} (docs: /docs{', demo: /web' if args.web else ''}, "
          f"token {'required' if settings.token else 'off'})", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, access_log=args.log_requests, log_level="info")
    finally:
        workers.stop()
        if web_cache is not None:
            shutil.rmtree(web_cache, ignore_errors=True)
    return 0


def run_web(args: argparse.Namespace) -> int:
    _require_serve_extra()
    from lisa.serve.web import launch

    workers = build_workers(args).start()
    try:
        launch(workers, host=args.host, port=args.port, model_name=str(args.model), log_requests=args.log_requests,
               examples_dir=args.examples)
    finally:
        workers.stop()
    return 0
