"""One external OpenAI-compatible upstream: its settings and an HTTP client for it.

The upstream sees the gateway's own key for it (from an environment variable), never the
client's. Its failures map to the OpenAI envelope here, in our words: a refusal of the request (4xx)
keeps its status, the ``param`` it names and a known ``code``, never the upstream's message
(it may name the upstream account or its limits; it is logged); a refusal of our
credentials, a 5xx, a timeout or an unreachable host is a 502 ``upstream_error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import EventSource

from gateway.errors import GatewayError, UpstreamError, UpstreamRejectedError
from gateway.serving.formatting.responder import DONE
from gateway.settings import UpstreamSettings
from gateway.upstream.breaker import CircuitBreaker
from gateway.upstream.tokens import TiktokenCounter, encoding_name_for, offline_encoding

log = logging.getLogger("llm_gateway.upstream")
RETRY_BACKOFF_S = 0.5  # then 1 s, 2 s, ...
KEEPALIVE_S = 2.0  # below the upstream server's own keep-alive timeout
STREAM_END_S = 1.0  # after [DONE], how long the rest of a stream may take to arrive


@dataclass(frozen=True)
class UpstreamModel:
    name: str  # what clients call it
    base_url: str
    upstream_model: str  # what the upstream calls it
    counter: TiktokenCounter = field(repr=False)
    context_window: int = 128_000
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 120.0
    connect_timeout_s: float = 10.0
    retries: int = 2  # failures before an answer (unreachable, 5xx) tried again
    breaker_failures: int = 5  # failures in a row that stop calling it for a while
    breaker_cooldown_s: float = 30.0
    seats: int | None = None  # requests sent at once; more wait in the fair queue

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"{self.name}: base_url must be http(s)")
        if self.context_window < 16 or self.timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError(f"{self.name}: context_window and timeouts must be positive")

    @classmethod
    def from_settings(cls, name: str, settings: UpstreamSettings) -> UpstreamModel:
        upstream_model = settings.model or name
        key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
        if settings.api_key_env and not key:
            raise ValueError(f"{name}: environment variable {settings.api_key_env} is not set")
        encoding = offline_encoding(encoding_name_for(upstream_model, settings.encoding))
        return cls(name, settings.base_url.rstrip("/"), upstream_model, TiktokenCounter(encoding),
                   settings.context_window, key, settings.timeout_s, settings.connect_timeout_s,
                   settings.retries, settings.breaker_failures, settings.breaker_cooldown_s,
                   settings.seats)


# The upstream's error codes a client may see; any other (or none) becomes ours.
PUBLIC_CODES = frozenset({"context_length_exceeded", "invalid_value", "invalid_type",
                          "missing_required_parameter", "unsupported_parameter",
                          "unsupported_value", "rate_limit_exceeded", "model_not_found"})


def _fields(response: httpx.Response) -> tuple[str | None, str | None]:
    """The upstream error's ``param`` and ``code`` (never its message: it may name the
    upstream account, its organisation or its limits)."""
    try:
        error = response.json()["error"]
        param, code = error.get("param"), error.get("code")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, None
    return (param if isinstance(param, str) else None,
            code if isinstance(code, str) and code in PUBLIC_CODES else None)


def _rejection(response: httpx.Response) -> GatewayError:
    status = response.status_code
    log.warning("upstream %s answered %d: %s", response.request.url.host, status,
                response.text[:500])
    if status in (401, 403) or status >= 500:
        return UpstreamError(f"the upstream API failed ({status})", retry_after=5)
    param, code = _fields(response)
    retry = response.headers.get("retry-after")
    if status == 429:
        message = "the upstream API is rate limiting this model; retry later"
    else:
        message = f"the upstream API refused the request ({status})" + (
            f": check '{param}'" if param else "")
    return UpstreamRejectedError(
        status, message, error_type="rate_limit_error" if status == 429 else None,
        param=param, code=code, retry_after=float(retry) if retry and retry.isdigit() else None)


def _failed(what: str, exc: BaseException) -> UpstreamError:
    log.warning("upstream %s: %r", what, exc)
    return UpstreamError(f"the upstream API {what}", retry_after=5)


class UpstreamClient:
    """Failures before an answer (unreachable, 5xx) are retried with backoff; a breaker stops
    calling an upstream that keeps failing, for a cooldown."""

    def __init__(self, model: UpstreamModel,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        headers = {"authorization": f"Bearer {model.api_key}"} if model.api_key else {}
        timeout = httpx.Timeout(model.timeout_s, connect=model.connect_timeout_s)
        # Idle connections are dropped before a uvicorn server (vLLM's own, 5 s) drops them.
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20,
                              keepalive_expiry=KEEPALIVE_S)
        self._http = httpx.AsyncClient(base_url=model.base_url, headers=headers,
                                       timeout=timeout, transport=transport, limits=limits)
        self._retries = model.retries
        self._breaker = CircuitBreaker(model.breaker_failures, model.breaker_cooldown_s)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._send(path, body, stream=False)
        try:
            payload = response.json()
        except ValueError as exc:
            raise UpstreamError("the upstream sent a body that is not JSON") from exc
        if not isinstance(payload, dict):
            raise UpstreamError("the upstream sent a body that is not a JSON object")
        return payload

    async def open_stream(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """Send a streamed request; the caller reads ``chunks`` and must close the response."""
        return await self._send(path, body, stream=True)

    async def _send(self, path: str, body: dict[str, Any], stream: bool) -> httpx.Response:
        if not self._breaker.allow():
            raise UpstreamError("the upstream API is unavailable for now (repeated failures)",
                                retry_after=self._breaker.retry_after_s)
        headers = {"accept": "text/event-stream"} if stream else {}
        for attempt in range(self._retries + 1):
            try:
                response = await self._http.send(
                    self._http.build_request("POST", path, json=body, headers=headers),
                    stream=stream)
            except httpx.HTTPError as exc:
                error: GatewayError = _failed("could not be reached", exc)
            else:
                if response.status_code < 400:
                    self._breaker.succeeded()
                    return response
                error = await _refused(response)
                if response.status_code < 500:
                    self._breaker.succeeded()  # the upstream answered: it refused the request
                    raise error
            self._breaker.failed()
            if attempt < self._retries and self._breaker.allow():
                await asyncio.sleep(RETRY_BACKOFF_S * 2**attempt)
            else:
                break
        raise error


async def _refused(response: httpx.Response) -> GatewayError:
    try:
        await response.aread()
    finally:
        await response.aclose()
    return _rejection(response)


async def chunks(response: httpx.Response) -> AsyncGenerator[dict[str, Any], None]:
    """The JSON chunks of an open OpenAI event stream, up to ``[DONE]``; then the stream is
    read to its end, so its connection goes back to the pool (closed half-read, it is
    dropped and the next request pays a new TLS handshake)."""
    events = EventSource(response).aiter_sse()
    try:
        async for event in events:
            if event.data == DONE:
                with contextlib.suppress(TimeoutError, httpx.HTTPError):
                    async with asyncio.timeout(STREAM_END_S):
                        async for _ in events:
                            pass
                return
            payload = json.loads(event.data)
            if isinstance(payload, dict) and "error" in payload:
                raise _failed("failed mid-stream", ValueError(payload["error"]))
            if isinstance(payload, dict):
                yield payload
    except httpx.HTTPError as exc:
        raise _failed("stream broke", exc) from exc
    except ValueError as exc:
        raise UpstreamError("the upstream sent an event that is not JSON") from exc
