"""`lisa serve api`: the HTTP API (FastAPI) in front of the model worker(s).

POST /v1/segment (multipart upload or JSON with base64), POST /v1/chat (a conversation id
kept in memory with a TTL), GET /healthz, GET /metrics (Prometheus). Every limit answers
with its own status: 413 upload bytes or pixels, 422 bad input, 429 full queue (with
Retry-After), 504 per-request timeout, 401 a missing or wrong bearer token.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, Field, ValidationError

from lisa import __version__
from lisa.errors import LisaError
from lisa.inference.pipeline import SegmentResult, Turns
from lisa.serve.conversations import ConversationStore
from lisa.serve.multipart import parse_multipart
from lisa.serve.payload import TooLarge, decode_base64, decode_image, result_payload
from lisa.serve.worker import QueueFull, WorkerPool

log = logging.getLogger("lisa.serve")


@dataclass(frozen=True)
class ApiSettings:
    max_upload_bytes: int = 10 * 1024 * 1024  # the whole request body
    max_pixels: int = 4096 * 4096
    max_query_chars: int = 2000
    max_new_tokens: int = 256  # the most a request may ask for

    @property
    def default_new_tokens(self) -> int:
        return min(64, self.max_new_tokens)
    request_timeout_s: float = 60.0  # queue wait + inference
    max_conversations: int = 64  # each holds its decoded image: at most max_pixels * 3 bytes
    conversation_ttl_s: float = 900.0
    max_turns: int = 16
    token: str | None = None  # bearer token; None: no authentication
    log_requests: bool = False  # log each request's query and image size (off: nothing a user sends is logged)


class ApiError(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


# ---- schema --------------------------------------------------------------------------
class SegmentRequest(BaseModel):
    image_base64: str = Field(description="the image file (PNG, JPEG, WebP, ...), base64-encoded",
                              json_schema_extra={"format": "byte"})
    query: str = Field(min_length=1, description="a free-form question or instruction")
    max_new_tokens: int = Field(64, ge=1, description="answer length budget; omitted: min(64, the server's cap)")
    overlay: bool = Field(False, description="also return overlay_png_base64")


class ChatRequest(BaseModel):
    conversation_id: str | None = Field(None, description="omit to start a conversation (then image_base64 is needed)")
    image_base64: str | None = Field(None, description="the image of a new conversation, base64-encoded",
                                     json_schema_extra={"format": "byte"})
    query: str = Field(min_length=1)
    max_new_tokens: int = Field(64, ge=1)
    overlay: bool = False


class Rle(BaseModel):
    size: list[int] = Field(description="[height, width]")
    counts: str = Field(description="COCO compressed RLE (pycocotools.mask.decode reads it)")


class Mask(BaseModel):
    area: int
    bbox: list[int] = Field(description="[x, y, width, height] in pixels; [0, 0, 0, 0] for an empty mask")
    score: float = Field(description="mean foreground probability inside the mask")
    rle: Rle
    present: bool | None = Field(default=None, description="the model's presence head's verdict: false when it "
                                 "judged the object absent and left the mask empty; absent for a model without one")


class SegmentResponse(BaseModel):
    text: str = Field(description="the answer; each [SEG] marks one mask, in order")
    image_size: list[int] = Field(description="[height, width]")
    masks: list[Mask]
    timings_ms: dict[str, float]
    overlay_png_base64: str | None = None


class ChatResponse(SegmentResponse):
    conversation_id: str
    turn: int = Field(description="0 for the first question about the image")


class ErrorResponse(BaseModel):
    detail: str


class Health(BaseModel):
    status: str
    model: str
    version: str
    workers: int
    queue_depth: int
    queue_capacity: int
    conversations: int


def _errors(*codes: int) -> dict:
    reasons = {400: "malformed body", 401: "missing or wrong bearer token", 404: "unknown or expired conversation",
               409: "a turn of this conversation is already running", 413: "upload or image too large",
               415: "unsupported Content-Type", 422: "invalid input", 429: "queue full; see Retry-After",
               503: "conversation store full", 504: "request timed out"}
    return {code: {"model": ErrorResponse, "description": reasons[code]} for code in codes}


_SEGMENT_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/SegmentRequest"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image", "query"],
                "properties": {
                    "image": {"type": "string", "format": "binary", "description": "the image file"},
                    "query": {"type": "string", "minLength": 1},
                    "max_new_tokens": {"type": "integer", "minimum": 1},
                    "overlay": {"type": "boolean", "default": False},
                },
            }
        },
    },
}
_CHAT_BODY = {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatRequest"}}}}


# ---- the app -------------------------------------------------------------------------
def create_app(workers: WorkerPool, settings: ApiSettings, model_name: str = "lisa-tiny") -> FastAPI:
    registry = CollectorRegistry()
    requests = Counter("lisa_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=registry)
    latency = Histogram("lisa_request_seconds", "request latency, seconds", ["endpoint"], registry=registry,
                        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
    batch_size = Histogram("lisa_batch_size", "jobs per pipeline call", registry=registry, buckets=(1, 2, 4, 8, 16, 32))
    batch_seconds = Histogram("lisa_batch_seconds", "seconds per pipeline call", registry=registry)
    Gauge("lisa_queue_depth", "jobs waiting for a worker", registry=registry).set_function(lambda: workers.queue_depth)
    conversations = ConversationStore(settings.max_conversations, settings.conversation_ttl_s)
    Gauge("lisa_conversations", "conversations held in memory", registry=registry).set_function(lambda: len(conversations))
    seconds_per_job = [0.5]  # running mean, for Retry-After

    def observe_batch(size: int, seconds: float) -> None:
        batch_size.observe(size)
        batch_seconds.observe(seconds)
        seconds_per_job[0] = 0.8 * seconds_per_job[0] + 0.2 * seconds / size

    for worker in workers.workers:
        worker.on_batch = observe_batch

    app = FastAPI(title="lisa-seg API", version=__version__,
                  description="Reasoning segmentation: ask about an image, get an answer and masks (COCO RLE).")
    bearer = HTTPBearer(auto_error=False, description="needed when the server was started with a token")

    def authenticate(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if settings.token is None:
            return
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, settings.token.encode()):
            raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)",
                           {"WWW-Authenticate": "Bearer"})

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status, headers=error.headers)

    @app.middleware("http")
    async def _measure(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        endpoint = request.scope.get("route").path if request.scope.get("route") else "other"
        requests.labels(endpoint, str(response.status_code)).inc()
        latency.labels(endpoint).observe(time.perf_counter() - start)
        return response

    async def read_body(request: Request) -> bytes:
        limit = settings.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"the request body is {int(declared):,} bytes, above this server's limit of {limit:,}")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise ApiError(413, f"the request body is above this server's limit of {limit:,} bytes")
        return bytes(body)

    def image_from(data: bytes) -> np.ndarray:
        try:
            return decode_image(data, settings.max_pixels)
        except TooLarge as error:
            raise ApiError(413, str(error)) from None
        except LisaError as error:
            raise ApiError(422, str(error)) from None

    def check_query(query: str, max_new_tokens: int) -> None:
        if not query.strip():
            raise ApiError(422, "the query is empty")
        if len(query) > settings.max_query_chars:
            raise ApiError(422, f"the query is {len(query):,} characters, above this server's limit of "
                                f"{settings.max_query_chars:,}")
        if not 1 <= max_new_tokens <= settings.max_new_tokens:
            raise ApiError(422, f"max_new_tokens must be between 1 and {settings.max_new_tokens}")

    def token_budget(parsed: SegmentRequest | ChatRequest) -> int:
        return parsed.max_new_tokens if "max_new_tokens" in parsed.model_fields_set else settings.default_new_tokens

    async def infer(image: np.ndarray, query: str, history: Turns, max_new_tokens: int) -> SegmentResult:
        try:
            future = workers.submit(image, query, history, max_new_tokens)
        except QueueFull as error:
            wait = max(1, math.ceil(workers.queue_depth * seconds_per_job[0] / len(workers.workers)))
            raise ApiError(429, f"busy: {error}; retry in {wait} s", {"Retry-After": str(wait)}) from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), settings.request_timeout_s)
        except TimeoutError:
            future.cancel()  # still queued: the worker skips it
            raise ApiError(504, f"no result within this server's timeout of {settings.request_timeout_s:g} s") from None
        except LisaError as error:
            raise ApiError(422, str(error)) from None

    def log_request(endpoint: str, image: np.ndarray, query: str) -> None:
        if settings.log_requests:
            log.info("%s %dx%d %r", endpoint, image.shape[1], image.shape[0], query)

    @app.post("/v1/segment", response_model=SegmentResponse, response_model_exclude_none=True,
              responses=_errors(400, 401, 413, 415, 422, 429, 504), openapi_extra={"requestBody": _SEGMENT_BODY},
              dependencies=[Depends(authenticate)], summary="Segment what a query asks for")
    async def segment(request: Request) -> dict:
        body = await read_body(request)
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            fields = _form(body, content_type)
            if "image" not in fields or "query" not in fields:
                raise ApiError(422, "a multipart request needs the fields 'image' (the file) and 'query'")
            query = _text(fields["query"], "query")
            max_new_tokens = _int(fields.get("max_new_tokens", str(settings.default_new_tokens).encode()), "max_new_tokens")
            overlay = _bool(fields.get("overlay", b"false"), "overlay")
            image_bytes = fields["image"]
        elif content_type.startswith("application/json"):
            parsed = _json(SegmentRequest, body)
            query, max_new_tokens, overlay = parsed.query, token_budget(parsed), parsed.overlay
            image_bytes = _base64(parsed.image_base64)
        else:
            raise ApiError(415, "send multipart/form-data (fields image, query) or application/json (image_base64, query)")
        check_query(query, max_new_tokens)
        image = image_from(image_bytes)
        log_request("segment", image, query)
        result = await infer(image, query, [], max_new_tokens)
        return result_payload(image, result, overlay)

    @app.post("/v1/chat", response_model=ChatResponse, response_model_exclude_none=True,
              responses=_errors(400, 401, 404, 409, 413, 415, 422, 429, 503, 504),
              openapi_extra={"requestBody": _CHAT_BODY}, dependencies=[Depends(authenticate)],
              summary="Ask a question about an image, then follow-ups with the returned conversation_id")
    async def chat(request: Request) -> dict:
        body = await read_body(request)
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise ApiError(415, "send application/json (conversation_id or image_base64, query)")
        parsed = _json(ChatRequest, body)
        max_new_tokens = token_budget(parsed)
        check_query(parsed.query, max_new_tokens)
        if parsed.conversation_id is None:
            if parsed.image_base64 is None:
                raise ApiError(422, "a new conversation needs image_base64 (or give a conversation_id)")
            image = image_from(_base64(parsed.image_base64))
            conversation = conversations.create(image)
            if conversation is None:
                raise ApiError(503, "every conversation slot has a turn running; retry shortly", {"Retry-After": "1"})
        else:
            if parsed.image_base64 is not None:
                raise ApiError(422, "a conversation keeps its first image; omit conversation_id to start a new one")
            conversation = conversations.acquire(parsed.conversation_id)
            if conversation is None:
                raise ApiError(404, "unknown or expired conversation_id; start a new conversation with image_base64")
            if conversation is False:
                raise ApiError(409, "a turn of this conversation is still running; wait for its answer")
        if len(conversation.history) >= settings.max_turns:
            conversations.release(conversation, None)
            raise ApiError(422, f"this conversation has reached {settings.max_turns} turns; start a new one")
        log_request("chat", conversation.image, parsed.query)
        turn = None
        try:
            result = await infer(conversation.image, parsed.query, list(conversation.history), max_new_tokens)
            turn = (parsed.query, result.text)
        finally:
            conversations.release(conversation, turn)
        payload = result_payload(conversation.image, result, parsed.overlay)
        return {**payload, "conversation_id": conversation.id, "turn": len(conversation.history) - 1}

    @app.get("/healthz", response_model=Health, summary="Liveness and queue state (no token needed)")
    async def healthz() -> dict:
        return {"status": "ok", "model": model_name, "version": __version__, "workers": len(workers.workers),
                "queue_depth": workers.queue_depth, "queue_capacity": workers.capacity,
                "conversations": len(conversations)}

    @app.get("/metrics", response_class=Response, dependencies=[Depends(authenticate)], responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"},
        **_errors(401)}, summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.openapi = lambda: _openapi_with_bodies(app, settings)
    app.state.conversations = conversations
    return app


def _openapi_with_bodies(app: FastAPI, settings: ApiSettings) -> dict:
    """FastAPI's schema plus the request models the handlers parse themselves (so the body
    can be multipart or JSON, and a multipart file stays in memory), with this server's limits."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        multipart = schema["paths"]["/v1/segment"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        bodies = [multipart["properties"]]
        for model in (SegmentRequest, ChatRequest):
            components[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
            bodies.append(components[model.__name__]["properties"])
        for properties in bodies:
            properties["query"]["maxLength"] = settings.max_query_chars
            properties["max_new_tokens"]["maximum"] = settings.max_new_tokens
            properties["max_new_tokens"]["default"] = settings.default_new_tokens
        app.openapi_schema = schema
    return app.openapi_schema


def _form(body: bytes, content_type: str) -> dict[str, bytes]:
    try:
        return parse_multipart(body, content_type)
    except LisaError as error:
        raise ApiError(400, str(error)) from None


def _json(model: type[BaseModel], body: bytes):
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(422, f"{where}: {first['msg']}") from None


def _base64(text: str) -> bytes:
    try:
        return decode_base64(text)
    except LisaError as error:
        raise ApiError(422, str(error)) from None


def _text(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(422, f"{name} is not UTF-8 text") from None


def _int(raw: bytes, name: str) -> int:
    text = _text(raw, name).strip()
    if not text.lstrip("-").isdigit():
        raise ApiError(422, f"{name} must be an integer, got {text[:20]!r}")
    return int(text)


def _bool(raw: bytes, name: str) -> bool:
    text = _text(raw, name).strip().lower()
    if text not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ApiError(422, f"{name} must be true or false, got {text[:20]!r}")
    return text in ("true", "1", "yes", "on")
