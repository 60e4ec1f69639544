"""The FastAPI application: middleware, routes, error mapping and engine lifetime."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gateway.errors import install_error_handlers
from gateway.http import (
    adapter_routes,
    admin_routes,
    batches_routes,
    dashboard_routes,
    embeddings_routes,
    files_routes,
    health_routes,
    key_routes,
    metrics_routes,
    openai_routes,
    responses_routes,
    spend_routes,
    storage_routes,
    tenant_routes,
)
from gateway.http.json_body import JsonBoundsMiddleware
from gateway.http.middleware import (
    BodySizeLimitMiddleware,
    InFlightLimitMiddleware,
    RequestIdMiddleware,
)
from gateway.http.state import GatewayState
from gateway.serving.engine_startup import EngineStartup


def _stop_process(model: str, exc: BaseException) -> None:
    """A model that failed to load behind the first ends the process, as a failed start
    does: a pod restarts, a person reads the log (``EngineStartup`` logged why)."""
    del model, exc
    os.kill(os.getpid(), signal.SIGTERM)


@asynccontextmanager
async def _batch_worker(state: GatewayState) -> AsyncIterator[None]:
    if state.batches is None or state.metering is None:
        yield
        return
    async with state.batches.running(state.pipeline, state.metering.ledger.any_answered,
                                     state.settings.limits.drain_timeout_s):
        yield


def create_app(state: GatewayState, *, manage_engines: bool = True) -> FastAPI:
    """Build the app around ``state``; with ``manage_engines`` the lifespan starts/stops them."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.draining = False
        if state.metering is not None:
            await state.metering.start()  # migrate, close rows a crash left open
        await adapter_routes.follow_adapters(state)  # registered LoRA adapters, kept in step
        await state.planning.start()  # worker processes start in the background
        engines = EngineStartup(state.models, state.settings.default_model, _stop_process)
        if manage_engines:
            await engines.start()  # the default model's; the others load behind it
        try:
            async with (state.observability.running(), _batch_worker(state),
                        state.responses.purging()):
                yield
        finally:
            state.draining = True
            if manage_engines:
                await engines.stop()
            await state.planning.close()
            await state.upstreams.aclose()
            await state.cache.aclose()
            if state.metering is not None:
                await state.metering.stop()

    docs = state.settings.api_docs  # off in production profiles: no schema tour for strangers
    app = FastAPI(title="llm-gateway", version="0.1.0", lifespan=lifespan,
                  docs_url="/docs" if docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if docs else None)
    app.state.gateway = state
    install_error_handlers(app, on_error=state.observability.on_error)
    app.include_router(health_routes.router)
    app.include_router(openai_routes.router)
    app.include_router(responses_routes.router)
    app.include_router(embeddings_routes.router)
    app.include_router(files_routes.router)
    app.include_router(batches_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(key_routes.router)
    app.include_router(tenant_routes.router)
    app.include_router(adapter_routes.router)
    app.include_router(spend_routes.router)
    app.include_router(storage_routes.router)
    app.include_router(metrics_routes.router)
    app.include_router(dashboard_routes.router)
    if state.settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(state.settings.cors_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["authorization", "content-type"],
            expose_headers=["x-request-id", "x-request-cost", "x-cache"],
        )
    app.add_middleware(JsonBoundsMiddleware, max_depth=state.settings.limits.max_json_depth)
    app.add_middleware(InFlightLimitMiddleware, gauge=state.in_flight)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=state.settings.limits.max_body_bytes,
                       per_path={"/v1/files": state.settings.batches.max_file_bytes})
    app.add_middleware(RequestIdMiddleware)
    return app
