"""``llm-gateway serve``: run the gateway with its embedded engines."""

from __future__ import annotations

import typer
import uvicorn

from cli.draining import DrainingServer
from gateway.settings import Settings, load_settings

LOOPBACK = ("127.0.0.1", "::1", "localhost")
MIN_ADMIN_KEY_CHARS = 16
CONNECTION_SLACK = 64


def serve(
    profile: str = typer.Option(None, help="Settings profile (configs/profiles/*.yaml)."),
    host: str = typer.Option(None, help="Bind address (default from settings)."),
    port: int = typer.Option(None, help="Port (default from settings)."),
    insecure_no_auth: bool = typer.Option(
        False, "--insecure-no-auth",
        help="Serve with auth off on a non-loopback address: anyone who reaches it can spend "
             "tokens, create keys and read every tenant's spend."),
) -> None:
    """Serve the OpenAI-compatible API on http://HOST:PORT/v1."""
    from gateway.app import create_app
    from gateway.bootstrap import build_state, embedded_models
    from gateway.observability.logging import log_config

    settings = load_settings(profile=profile)
    if problem := unsafe(settings, host or settings.host, insecure_no_auth):
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    _preflight(settings)
    state = build_state(settings, embedded_models(settings), metered=True)
    app = create_app(state)
    config = uvicorn.Config(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_level="info",
        log_config=log_config(settings.observability.json_logs),
        timeout_graceful_shutdown=int(settings.limits.drain_timeout_s),
        # Connections beyond the in-flight cap (plus room for probes and admin) get a 503.
        limit_concurrency=settings.limits.max_in_flight + CONNECTION_SLACK,
    )
    DrainingServer(config, state).run()


def unsafe(settings: Settings, host: str, insecure_no_auth: bool) -> str | None:
    """Why these settings must not serve on ``host``: auth off beyond loopback (unless the
    operator insists), or an admin key short enough to guess."""
    if not settings.auth.enabled:
        if host in LOOPBACK or insecure_no_auth:
            return None
        return (f"auth is off (profile {settings.profile}) and the bind address {host} is not "
                "loopback: serve a profile with auth on, or pass --insecure-no-auth")
    key = settings.auth.admin_key.get_secret_value() if settings.auth.admin_key else ""
    if key and len(key) < MIN_ADMIN_KEY_CHARS:
        return f"the admin key must have at least {MIN_ADMIN_KEY_CHARS} characters"
    return unshared(settings)


def unshared(settings: Settings) -> str | None:
    """One of several gateways keeps one set of books with the others, or does not start:
    its own SQLite ledger and in-process limits would split keys, spend and budgets."""
    if not settings.metering.require_shared:
        return None
    if settings.database_url().startswith("sqlite"):
        return "one of several gateways needs the shared database (metering.database_url)"
    if not settings.metering.redis_url:
        return "one of several gateways needs the shared Redis (metering.redis_url)"
    return None


def _preflight(settings: Settings) -> None:
    """Refuse to start, with a clear message, when a model cannot be served here."""
    from engine.errors import UnsupportedQuantizationError
    from engine.quantization.capability import require_supported

    try:
        for name in settings.served_models():
            if not settings.models[name].is_remote:
                require_supported(settings.engine_config(name))
    except UnsupportedQuantizationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if problem := missing_vllm(settings):
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)


def missing_vllm(settings: Settings) -> str | None:
    """Why this install cannot serve ``settings`` without vLLM (the slim gateway image has
    none): an embedded engine, or a ``tool_parser`` (vLLM's parsers read tool calls)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        return None
    for name in settings.served_models():
        model = settings.models[name]
        if not model.is_remote:
            return f"model {name} runs an embedded engine, and vLLM is not installed here"
        if model.tool_parser is not None:
            return (f"model {name} sets tool_parser {model.tool_parser!r}, whose parser is "
                    "vLLM's, and vLLM is not installed here (use the full gateway image)")
    return None
