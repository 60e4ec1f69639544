"""Sending hostile bodies as raw JSON text and judging the answers.

Bodies go out as ``json.dumps(..., ensure_ascii=True)`` text: non-finite floats as ``NaN``
and ``Infinity`` literals, lone surrogates as ``\\ud800`` escapes, nesting as deep as the
strategy made it. Every answer is judged by ``problems``: never a 5xx; a 4xx carries the
OpenAI error envelope and, for a body-field problem, names the field (``param``); a 200
is a whole answer (a stream ends cleanly, with no error event).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import LiveGateway

REQUEST_TIMEOUT_S = 120.0
# A 4xx about the body must name the field; these statuses are about something else
# (401/403 credentials, 409 a conflict, 413 size, 429 limits).
PARAM_REQUIRED = frozenset({400, 404, 422})
ENVELOPE_KEYS = frozenset({"message", "type", "param", "code"})
# Internals that must never reach a client: tracebacks, paths, addresses, exception text.
LEAK = re.compile(r"Traceback|File \"|site-packages|/work/|/usr/lib|\bat 0x[0-9a-f]{6,}"
                  r"|\b[A-Z]\w*(Error|Exception): ")


@contextmanager
def _deep_recursion() -> Iterator[None]:
    """json.dumps recurses once per nesting level; hostile schemas nest thousands deep."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 50_000))
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def encode(body: Any) -> bytes:
    with _deep_recursion():
        return json.dumps(body, ensure_ascii=True, allow_nan=True).encode("ascii")


def shorten(text: str, limit: int = 700) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


@dataclass(frozen=True)
class Exchange:
    """One request and what came back."""

    path: str
    body: str  # the JSON text sent (shortened)
    status: int  # 0: no answer (transport error or timeout)
    text: str  # the answer's body (a stream: its events)
    request_id: str | None
    streamed: bool
    elapsed_s: float = 0.0

    def describe(self) -> str:
        return (f"POST {self.path} -> {self.status}\n  body: {self.body}\n"
                f"  answer: {shorten(self.text, 400)}")


class Prober:
    """A client of the live gateway with one virtual key; no keep-alive, so a connection a
    500 closed never fails the next request."""

    def __init__(self, gateway: LiveGateway, key: str) -> None:
        self.client = httpx.Client(
            base_url=gateway.base_url, timeout=REQUEST_TIMEOUT_S,
            headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
            limits=httpx.Limits(max_keepalive_connections=0))

    def close(self) -> None:
        self.client.close()

    def post(self, path: str, body: Any) -> Exchange:
        raw = encode(body)
        streamed = isinstance(body, dict) and body.get("stream") is True
        sent = shorten(raw.decode("ascii"))
        started = time.monotonic()
        try:
            with self.client.stream("POST", path, content=raw) as response:
                text = response.read().decode("utf-8", errors="replace")
                request_id = response.headers.get("x-request-id")
                status = response.status_code
        except httpx.HTTPError as exc:
            return Exchange(path, sent, 0, f"{type(exc).__name__}: {exc}", None, streamed,
                            time.monotonic() - started)
        return Exchange(path, sent, status, text, request_id, streamed,
                        time.monotonic() - started)


def envelope_problems(status: int, text: str, field_problem: bool = True) -> list[str]:
    """What is wrong with a 4xx answer's error envelope (nothing: an empty list)."""
    try:
        error = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        return [f"{status} without the OpenAI error envelope"]
    if not isinstance(error, dict) or set(error) != ENVELOPE_KEYS:
        return [f"{status} envelope keys {sorted(error) if isinstance(error, dict) else error}"]
    found = []
    if not isinstance(error["message"], str) or not error["message"]:
        found.append(f"{status} with an empty message")
    if field_problem and status in PARAM_REQUIRED and not error["param"]:
        found.append(f"{status} names no param")
    if isinstance(error["message"], str) and (leak := LEAK.search(error["message"])):
        found.append(f"{status} message leaks internals ({leak.group(0)!r})")
    return found


def _stream_problems(exchange: Exchange) -> list[str]:
    events = [line[5:].strip() for line in exchange.text.splitlines()
              if line.startswith("data:")]
    if not events:
        return ["a 200 stream with no events"]
    found = []
    for event in events:
        if event == "[DONE]":
            continue
        try:
            parsed = json.loads(event)
        except ValueError:
            found.append(f"a stream event is not JSON: {shorten(event, 200)}")
            continue
        if isinstance(parsed, dict) and (parsed.get("error")
                                         or parsed.get("type") == "error"):
            found.append(f"an error event in a 200 stream: {shorten(event, 300)}")
    last = events[-1]
    if exchange.path != "/v1/responses" and last != "[DONE]":
        found.append("the stream did not end with [DONE]")
    if exchange.path == "/v1/responses" and '"response.completed"' not in last \
            and '"response.incomplete"' not in last:
        found.append("the Responses stream did not end with completed or incomplete")
    return found


def problems(exchange: Exchange) -> list[str]:
    """Everything wrong with one answer."""
    if exchange.status == 0:
        return [f"no answer: {exchange.text}"]
    if exchange.status >= 500:
        return [f"server error {exchange.status}"]
    if exchange.status >= 400:
        return envelope_problems(exchange.status, exchange.text)
    if exchange.status != 200:
        return [f"unexpected status {exchange.status}"]
    if exchange.request_id is None:
        return ["a 200 without x-request-id"]
    if exchange.streamed:
        return _stream_problems(exchange)
    try:
        answer = json.loads(exchange.text)
    except ValueError:
        return ["a 200 whose body is not JSON"]
    if not isinstance(answer, dict) or "usage" not in answer:
        return ["a 200 without usage"]
    return []


def server_errors(log: Path, last: int = 8) -> list[str]:
    """The gateway log's last unhandled errors: each one's innermost frame and exception."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        if '"unhandled error"' not in line:
            continue
        try:
            trace = str(json.loads(line).get("exc_info", "")).strip().splitlines()
        except ValueError:
            continue
        frames = [t.strip() for t in trace if t.strip().startswith("File ")]
        found.append(f"{frames[-1] if frames else '?'}: {trace[-1] if trace else '?'}")
    return found[-last:]
