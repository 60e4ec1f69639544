"""``llm-gateway serve``: run the gateway with its embedded engines."""

from __future__ import annotations

import typer

from gateway.settings import load_settings


def serve(
    profile: str = typer.Option(None, help="Settings profile (configs/profiles/*.yaml)."),
    host: str = typer.Option(None, help="Bind address (default from settings)."),
    port: int = typer.Option(None, help="Port (default from settings)."),
) -> None:
    """Serve the OpenAI-compatible API on http://HOST:PORT/v1."""
    import uvicorn

    from gateway.app import create_app
    from gateway.bootstrap import build_state, embedded_models

    settings = load_settings(profile=profile)
    state = build_state(settings, embedded_models(settings))
    app = create_app(state)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_level="info",
        timeout_graceful_shutdown=int(settings.limits.request_timeout_s),
    )
