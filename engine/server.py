"""The engine server: one engine behind a thin HTTP/SSE API (``llm-gateway engine serve``).

``POST /v1/generate`` takes a ``GenerationRequest`` (engine/wire.py) and streams one SSE
event per ``EngineOutput``: token ids, finish reasons, cached-token and speculation counts
pass through untouched, so the gateway bills a remote replica exactly like an embedded
engine. Closing the stream aborts the request in the engine; ``POST /v1/abort/{id}`` does
too. The model loads in the background. Three probes:

- ``/startup`` answers 200 once loading is over (loaded, or failed: liveness then says so),
  so a startup probe on it bounds the load;
- ``/health`` (liveness) fails when loading failed, or the engine died and its in-process
  restart failed or overran, or it holds requests but finishes no step (engine/liveness.py);
- ``/ready`` once the engine is loaded and not draining (readiness, and the gateway's check).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sse_starlette import EventSourceResponse

from engine import liveness
from engine.errors import EngineRequestError, EngineUnavailableError
from engine.protocol import Engine, EngineOutput, GenerationRequest
from engine.wire import embedding_request_from_wire, encode, request_from_wire

log = logging.getLogger("llm_gateway.engine.server")


@dataclass
class EngineServerState:
    engine: Engine
    draining: bool = False
    load_error: str | None = None
    started: bool = False  # the engine finished loading at least once
    policy: liveness.LivenessPolicy = field(default_factory=liveness.LivenessPolicy)
    requests_total: int = 0
    in_flight: set[str] = field(default_factory=set)

    async def is_ready(self) -> bool:
        return not self.draining and self.load_error is None and await self.engine.is_ready()

    def liveness_problem(self) -> str | None:
        if self.load_error is not None:
            return self.load_error
        return liveness.problem(self.engine, self.policy, time.monotonic())

    async def readiness(self) -> dict[str, Any]:
        return {
            "ready": await self.is_ready(),
            "draining": self.draining,
            "load_error": self.load_error,
            "model": self.engine.model_name,
            "max_model_len": self.engine.max_model_len,
            "in_flight": len(self.in_flight),
            "requests_total": self.requests_total,
            "stats": encode(self.engine.stats()),
        }


def _error(status: int, kind: str, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message, "param": param}},
                        status_code=status)


def _error_for(exc: Exception) -> JSONResponse:
    """The engine server's one mapping of failures to HTTP (the gateway maps them back)."""
    if isinstance(exc, EngineRequestError):
        return _error(400, "request", str(exc), exc.param)
    if isinstance(exc, EngineUnavailableError | StopAsyncIteration):
        return _error(503, "unavailable", str(exc))
    log.exception("engine request failed", exc_info=exc)
    return _error(500, "internal", "the engine failed")


class _EngineCollector:
    """Prometheus view of the engine (the KEDA trigger reads ``..._requests_waiting``)."""

    def __init__(self, state: EngineServerState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        stats = self._state.engine.stats()
        model = self._state.engine.model_name
        gauges = {
            "llmgw_engine_requests_running": ("Requests the engine is running", stats.running),
            "llmgw_engine_requests_waiting": ("Requests queued in the engine", stats.waiting),
            "llmgw_engine_kv_cache_usage": ("KV cache usage (0-1)", stats.kv_cache_usage),
            "llmgw_engine_in_flight": ("Open generate streams", len(self._state.in_flight)),
        }
        for name, (doc, value) in gauges.items():
            gauge = GaugeMetricFamily(name, doc, labels=["model"])
            gauge.add_metric([model], float(value))
            yield gauge
        counters = {
            "llmgw_engine_prompt_tokens": ("Prompt tokens processed", stats.prompt_tokens_total),
            "llmgw_engine_generation_tokens": ("Tokens generated", stats.generation_tokens_total),
        }
        for name, (doc, value) in counters.items():
            counter = CounterMetricFamily(name, doc, labels=["model"])
            counter.add_metric([model], float(value))
            yield counter


async def _stream(
    state: EngineServerState, request: GenerationRequest,
    stream: AsyncIterator[EngineOutput], first: EngineOutput,
) -> AsyncIterator[dict[str, str]]:
    finished = first.finished
    try:
        yield {"data": json.dumps(encode(first))}
        async for out in stream:
            finished = out.finished
            yield {"data": json.dumps(encode(out))}
    except Exception as exc:  # after the 200: report in-band, the gateway raises it
        kind = "request" if isinstance(exc, EngineRequestError) else "unavailable"
        param = exc.param if isinstance(exc, EngineRequestError) else None
        yield {"event": "error",
               "data": json.dumps({"type": kind, "message": str(exc), "param": param})}
    finally:
        with anyio.CancelScope(shield=True):  # a closed stream still aborts the request
            if not finished:
                await state.engine.abort(request.request_id)
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
            state.in_flight.discard(request.request_id)


def create_engine_app(state: EngineServerState, *, manage_engine: bool = True) -> FastAPI:
    """The engine server around ``state``; with ``manage_engine`` it loads and stops it."""

    async def load() -> None:
        try:
            await state.engine.start()
            state.started = True
        except Exception as exc:
            state.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("engine failed to load")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.started = state.started or not manage_engine
        loading = asyncio.create_task(load()) if manage_engine else None
        try:
            yield
        finally:
            state.draining = True
            if loading is not None:
                loading.cancel()
                await state.engine.stop()

    app = FastAPI(title="llm-gateway engine", lifespan=lifespan)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_EngineCollector(state))
    _routes(app, state, registry)
    return app


def _routes(app: FastAPI, state: EngineServerState, registry: CollectorRegistry) -> None:
    @app.post("/v1/generate", response_model=None)
    async def generate(body: dict[str, Any] = Body(...)) -> Response:
        if not await state.is_ready():
            return _error(503, "unavailable", "the engine is loading or draining")
        try:
            request = request_from_wire(body)
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, "request", f"bad generation request: {exc}")
        stream = state.engine.generate(request)
        state.in_flight.add(request.request_id)
        state.requests_total += 1
        try:
            first = await anext(stream)
        except Exception as exc:
            await state.engine.abort(request.request_id)
            state.in_flight.discard(request.request_id)
            return _error_for(exc)
        return EventSourceResponse(_stream(state, request, stream, first), sep="\n", ping=15)

    @app.post("/v1/embed", response_model=None)
    async def embed(body: dict[str, Any] = Body(...)) -> Response:
        if not await state.is_ready():
            return _error(503, "unavailable", "the engine is loading or draining")
        try:
            request = embedding_request_from_wire(body)
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, "request", f"bad embedding request: {exc}")
        state.in_flight.add(request.request_id)
        state.requests_total += 1
        try:
            return JSONResponse(encode(await state.engine.embed(request)))
        except Exception as exc:
            return _error_for(exc)
        finally:
            state.in_flight.discard(request.request_id)

    @app.post("/v1/abort/{request_id}")
    async def abort(request_id: str) -> dict[str, bool]:
        known = request_id in state.in_flight
        await state.engine.abort(request_id)
        return {"aborted": known}

    @app.get("/startup")
    async def startup() -> JSONResponse:
        over = state.started or state.load_error is not None
        return JSONResponse({"started": over}, status_code=200 if over else 503)

    @app.get("/health")
    async def health() -> JSONResponse:
        if (problem := state.liveness_problem()) is not None:
            return _error(503, "unavailable", problem)
        return JSONResponse({"status": "ok"})

    @app.get("/ready")
    async def ready() -> JSONResponse:
        body = await state.readiness()
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics")
    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")
