"""JSON log lines carry the request id of the request being handled."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import logging.config
import re
from collections.abc import Iterator

import httpx
import pytest

from gateway.observability.logging import REQUEST_ID, log_config
from tests.conftest import MODEL

LOGGERS = ("", "llm_gateway", "uvicorn", "uvicorn.error", "uvicorn.access", "alembic", "httpx",
           "httpcore")


@contextlib.contextmanager
def configured(json_logs: bool, level: str = "INFO") -> Iterator[io.StringIO]:
    """The gateway's logging config, writing to a buffer; restored afterwards."""
    saved = [(logging.getLogger(name), logging.getLogger(name).handlers[:],
              logging.getLogger(name).level, logging.getLogger(name).propagate)
             for name in LOGGERS]
    stream = io.StringIO()
    config = log_config(json_logs=json_logs, level=level)
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    try:
        yield stream
    finally:
        for logger, handlers, level_was, propagate in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level_was)
            logger.propagate = propagate


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    with configured(json_logs=True) as stream:
        yield stream


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


def test_log_when_a_replica_call_succeeds_then_httpx_writes_no_line_of_its_own() -> None:
    with configured(json_logs=True) as stream:
        logging.getLogger("httpx").info('HTTP Request: POST http://10.0.0.7:8000/x "200 OK"')
        logging.getLogger("httpx").warning("a warning still reaches the log")
    assert [r["message"] for r in records(stream)] == ["a warning still reaches the log"]


def test_log_when_text_then_one_short_line_per_record() -> None:
    with configured(json_logs=False) as stream:
        logging.getLogger("llm_gateway.engines").info("smollm2 ready after %d s", 83)
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO    smollm2 ready after 83 s\n", stream.getvalue())


@pytest.mark.parametrize("json_logs", [True, False])
def test_log_when_alembic_chatters_then_only_its_warnings_unless_debug(json_logs: bool) -> None:
    with configured(json_logs) as stream:
        logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate")
        logging.getLogger("alembic.runtime.migration").warning("a real problem")
    assert "setup plugin" not in stream.getvalue() and "a real problem" in stream.getvalue()
    with configured(json_logs, level="DEBUG") as stream:
        logging.getLogger("alembic.runtime.plugins").info("setup plugin alembic.autogenerate")
    assert "setup plugin" in stream.getvalue()
