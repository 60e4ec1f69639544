"""JSON log lines carry the request id of the request being handled."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Iterator

import httpx
import pytest

from gateway.observability.logging import REQUEST_ID, log_config
from tests.conftest import MODEL

LOGGERS = ("", "llm_gateway", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The gateway's JSON logging config, writing to a buffer; restored afterwards."""
    saved = [(logging.getLogger(name), logging.getLogger(name).handlers[:],
              logging.getLogger(name).level, logging.getLogger(name).propagate)
             for name in LOGGERS]
    stream = io.StringIO()
    config = log_config(json_logs=True)
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    yield stream
    for logger, handlers, level, propagate in saved:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_log_when_request_id_is_set_then_json_line_carries_it(json_log: io.StringIO) -> None:
    token = REQUEST_ID.set("req-42")
    try:
        logging.getLogger("llm_gateway.test").warning("hello %s", "there")
    finally:
        REQUEST_ID.reset(token)
    (line,) = records(json_log)
    assert line["message"] == "hello there"
    assert line["request_id"] == "req-42"
    assert line["level"] == "WARNING"
    assert line["logger"] == "llm_gateway.test"


async def test_log_when_chat_finishes_then_one_line_with_its_request_id_and_usage(
    json_log: io.StringIO, fake_client: httpx.AsyncClient,
) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    response = await fake_client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    finished = [r for r in records(json_log) if r["message"] == "request finished"]
    assert len(finished) == 1
    assert finished[0]["request_id"] == response.headers["x-request-id"]
    assert finished[0]["status"] == "ok"
    assert finished[0]["completion_tokens"] == response.json()["usage"]["completion_tokens"]
