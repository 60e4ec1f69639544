"""``llm-gateway serve``: run the gateway with its embedded engines."""

from __future__ import annotations

import os

import typer

from cli.banner import LogFormat, human_logs
from cli.gateway_server import run_gateway
from cli.workers import Workers, refuse_workers
from gateway.settings import Settings, load_settings

LOOPBACK = ("127.0.0.1", "::1", "localhost")
MIN_ADMIN_KEY_CHARS = 16


def serve(
    profile: str = typer.Option(None, help="Settings profile (configs/profiles/*.yaml)."),
    host: str = typer.Option(None, help="Bind address (default from settings)."),
    port: int = typer.Option(None, help="Port (default from settings)."),
    probe_port: int = typer.Option(
        None, help="Also serve /health and /ready on this port (default: server.probe_port)."),
    insecure_no_auth: bool = typer.Option(
        False, "--insecure-no-auth",
        help="Serve with auth off on a non-loopback address: anyone who reaches it can spend "
             "tokens, create keys and read every tenant's spend."),
    workers: int = typer.Option(
        1, "--workers", min=1,
        help="Gateway processes on this port (remote mode only: models served by replicas, "
             "books in PostgreSQL, limits in Redis)."),
    log_format: LogFormat = typer.Option(
        LogFormat.AUTO, "--log-format",
        help="auto: short lines and a banner on a terminal, JSON lines otherwise."),
) -> None:
    """Serve the OpenAI-compatible API on http://HOST:PORT/v1."""
    from gateway.app import create_app
    from gateway.bootstrap import build_state, embedded_models

    settings = load_settings(profile=profile)
    if problem := unsafe(settings, host or settings.host, insecure_no_auth):
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    _preflight(settings)
    if problem := refuse_workers(settings, workers):
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    if workers > 1:
        raise typer.Exit(Workers(profile, host or settings.host, port or settings.port,
                                 probe_port or settings.server.probe_port, workers).run())
    human = human_logs(log_format, settings)
    if human:  # vLLM's per-line INFO stays out of a person's terminal unless asked for
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    state = build_state(settings, embedded_models(settings), metered=True)
    run_gateway(create_app(state), state, settings, host or settings.host,
                port or settings.port, probe_port or settings.server.probe_port,
                human_logs=human)


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
    none): an embedded engine, or a ``tool_parser`` or ``reasoning_parser`` (vLLM's parsers
    read tool calls and reasoning spans)."""
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        return None
    for name in settings.served_models():
        model = settings.models[name]
        if not model.is_remote:
            return f"model {name} runs an embedded engine, and vLLM is not installed here"
        for field in ("tool_parser", "reasoning_parser"):
            if (parser := getattr(model, field)) is not None:
                return (f"model {name} sets {field} {parser!r}, whose parser is vLLM's, and "
                        "vLLM is not installed here (use the full gateway image)")
    return None
