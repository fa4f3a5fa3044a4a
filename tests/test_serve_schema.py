"""schemathesis against the API's own OpenAPI schema, over real HTTP: whatever it generates,
the server answers without a 5xx, with a status code, content type and body the schema names."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from _serve_helpers import serve_in_thread
from lisa.serve.api import ApiSettings, create_app
from lisa.serve.worker import ModelWorker, WorkerPool

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def base_url(tiny_pipeline):
    pool = WorkerPool([ModelWorker(tiny_pipeline, batch_window_s=0.0)]).start()
    app = create_app(pool, ApiSettings(max_new_tokens=4, max_pixels=512 * 512, request_timeout_s=30))
    with serve_in_thread(app) as url:
        yield url
    pool.stop()


# schemathesis.pytest.from_fixture fails on pytest 9.2 ('Function' object has no attribute
# '_nodeid'), so each operation's strategy is driven by hypothesis directly.
OPERATIONS = [("POST", "/v1/segment"), ("POST", "/v1/chat"), ("GET", "/healthz"), ("GET", "/metrics")]


@pytest.mark.slow  # schemathesis explores every operation
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_api_conforms_to_its_schema(base_url, method, path) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operation = schema[path][method]

    @given(case=operation.as_strategy())
    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
    def conforms(case) -> None:
        case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=30)

    conforms()
