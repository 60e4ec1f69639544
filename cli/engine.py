"""``llm-gateway engine serve``: one vLLM engine replica behind the engine server API.

The gateway reaches replicas in remote mode (``replicas`` / ``replicas_dns`` in the model's
settings). Same configs as the gateway: ``--model`` picks the model's engine settings.
"""

from __future__ import annotations

import typer
import uvicorn

from cli.draining import DrainingServer
from engine.server import EngineServerState
from gateway.settings import load_settings

app = typer.Typer(help="Run engine replicas for remote mode.", no_args_is_help=True)


@app.command("serve")
def serve(
    model: str = typer.Option(..., help="The model to serve (a key of configs/models.yaml)."),
    profile: str = typer.Option(None, help="Settings profile (configs/profiles/*.yaml)."),
    host: str = typer.Option("127.0.0.1", help="Bind address."),
    port: int = typer.Option(8001, help="Port."),
    drain_s: int = typer.Option(300, help="On SIGTERM, requests in flight get this long."),
) -> None:
    """Serve one engine on http://HOST:PORT (/v1/generate, /ready, /health, /metrics)."""
    from engine.embedded import EmbeddedEngine
    from engine.server import create_engine_app

    settings = load_settings(profile=profile)
    if model not in settings.models:
        raise typer.BadParameter(f"unknown model {model!r}", param_hint="--model")
    state = EngineServerState(EmbeddedEngine(settings.engine_config(model)))
    config = uvicorn.Config(
        create_engine_app(state), host=host, port=port, log_level="info",
        timeout_graceful_shutdown=drain_s,
    )
    DrainingServer(config, state).run()
