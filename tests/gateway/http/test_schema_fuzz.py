"""Hostile input: schemathesis drives every documented route; the gateway never answers 5xx.

Runs against the real app (every route, auth on) around the fake engine, in-process.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from engine.fake import FakeEngine
from gateway.app import create_app
from tests.conftest import ADMIN_KEY, MODEL, fake_state

EXAMPLES_PER_OPERATION = 150
_calls = {"count": 0}


def _app() -> Any:
    return create_app(fake_state(FakeEngine(model_name=MODEL)), manage_engines=False)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.slow
def test_any_generated_request_when_sent_then_never_a_server_error(case: Any) -> None:
    case.headers = {**(case.headers or {}), "authorization": f"Bearer {ADMIN_KEY}"}
    response = case.call()
    _calls["count"] += 1
    intended_503 = case.path == "/ready" and response.status_code == 503
    assert response.status_code < 500 or intended_503, (case.method, case.path, response.text)
    if response.status_code >= 400 and not intended_503:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}


def test_fuzz_when_suite_ran_then_at_least_a_thousand_cases() -> None:
    # Runs after the parametrized test above (file order): counts the requests really sent.
    assert _calls["count"] >= 1000, _calls
