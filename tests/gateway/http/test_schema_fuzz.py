"""Hostile input: schemathesis drives every documented route; the gateway never answers 5xx.

Runs against a running gateway with metering on (``tests.gateway.fake_gateway``: the real
app around the fake engine, a SQLite ledger, auth on, the batch worker running), over
HTTP. The OpenAI routes are called with a virtual key that has limits and a budget (so
requests are reserved, held and settled), the admin routes with the admin key. Each
operation is its own test and counts the requests it really sent (the ``sent`` fixture
fails the test when too few went out), so any one of them passes or fails alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from engine.fake import FakeEngine
from gateway.app import create_app
from tests.conftest import ADMIN_KEY, MODEL, fake_state
from tests.gateway.fake_gateway_process import start_fake_gateway

EXAMPLES_PER_OPERATION = 150
# Schemathesis adds its examples and coverage cases to the EXAMPLES_PER_OPERATION random
# ones (153 to 543 requests per operation, measured); below this one was not really fuzzed.
MIN_REQUESTS_PER_OPERATION = 100
# No parameters and no body: only the few coverage variants (headers) are left to send.
FIXED_REQUEST_OPERATIONS = frozenset({"GET /health", "GET /ready"})
# What the fuzz must reach at the very least (the OpenAI surface and the admin API).
CORE_OPERATIONS = frozenset({
    "GET /v1/models", "POST /v1/chat/completions", "POST /v1/completions",
    "POST /v1/files", "POST /v1/batches", "POST /admin/keys", "GET /admin/spend",
}) | FIXED_REQUEST_OPERATIONS

Sent = list[tuple[str, int]]


def _openapi() -> dict[str, Any]:
    app = create_app(fake_state(FakeEngine(model_name=MODEL)), manage_engines=False)
    document: dict[str, Any] = app.openapi()
    return document


# Generates the cases (one test per operation); requests go to the running ``gateway``.
schema = schemathesis.openapi.from_dict(_openapi())


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL, a virtual key): one metered gateway process for the whole fuzz."""
    folder = tmp_path_factory.mktemp("fuzz")
    process, base = start_fake_gateway(f"sqlite+aiosqlite:///{folder / 'ledger.db'}",
                                       folder / "gateway.log", 0.0)
    try:
        made = httpx.post(base + "/admin/keys", headers={"authorization": f"Bearer {ADMIN_KEY}"},
                          json={"tenant": "fuzz", "rpm": 1_000_000, "tpm": 100_000_000,
                                "budget_usd": "1000", "max_parallel_requests": 64})
        made.raise_for_status()
        yield base, made.json()["key"]
    finally:
        process.terminate()
        process.wait(timeout=60)
        _no_server_errors_logged(folder / "gateway.log")


def _no_server_errors_logged(log: Path) -> None:
    text = log.read_text(errors="replace")
    assert "unhandled error" not in text and "Traceback" not in text, text[-4000:]


@pytest.fixture
def sent() -> Iterator[Sent]:
    """(operation, status) of each request the test sent; checked once the test has run."""
    requests: Sent = []
    yield requests
    labels = {label for label, _ in requests}
    assert len(labels) == 1, f"expected requests to one operation, got {sorted(labels)}"
    (label,) = labels
    count, least = len(requests), (
        1 if label in FIXED_REQUEST_OPERATIONS else MIN_REQUESTS_PER_OPERATION)
    assert count >= least, f"{label}: only {count} requests sent"


def test_schema_when_loaded_then_lists_the_core_routes_for_the_fuzz() -> None:
    # An empty or broken schema would leave the parametrized test below with nothing to run.
    labels = {result.ok().label for result in schema.get_all_operations()}
    assert labels >= CORE_OPERATIONS, sorted(CORE_OPERATIONS - labels)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),  # function-scoped fixtures included: on purpose
)
@pytest.mark.slow
def test_any_generated_request_when_sent_then_never_a_server_error(
    case: Any, gateway: tuple[str, str], sent: Sent
) -> None:
    base, key = gateway
    token = key if case.path.startswith("/v1/") else ADMIN_KEY
    case.headers = {**(case.headers or {}), "authorization": f"Bearer {token}"}
    response = case.call(base_url=base, timeout=60)
    sent.append((case.operation.label, response.status_code))
    intended_503 = case.path == "/ready" and response.status_code == 503
    assert response.status_code < 500 or intended_503, (case.method, case.path, response.text)
    if response.status_code >= 400 and not intended_503:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
