"""``llm-gateway engine serve``: one vLLM engine replica behind the engine server API.

The gateway reaches replicas in remote mode (``replicas`` / ``replicas_dns`` in the model's
settings). Same configs as the gateway: ``--model`` picks the model's engine settings; vLLM
engine flags after ``--`` are passed on (engine/vllm_args.py).
"""

from __future__ import annotations

import dataclasses

import typer
import uvicorn

from cli.draining import DrainingServer
from engine.liveness import LivenessPolicy
from engine.server import EngineServerState
from gateway.settings import load_settings

app = typer.Typer(help="Run engine replicas for remote mode.", no_args_is_help=True)


@app.command("serve", context_settings={"allow_extra_args": True,
                                         "ignore_unknown_options": True})
def serve(
    ctx: typer.Context,
    model: str = typer.Option(..., help="The model to serve (a key of configs/models.yaml)."),
    profile: str = typer.Option(None, help="Settings profile (configs/profiles/*.yaml)."),
    host: str = typer.Option("127.0.0.1", help="Bind address."),
    port: int = typer.Option(8001, help="Port."),
    drain_s: int = typer.Option(300, help="On SIGTERM, requests in flight get this long."),
    restart_grace_s: float = typer.Option(
        1800, help="Liveness fails when a dead engine is not back in process after this long."),
    stall_s: float = typer.Option(
        300, help="Liveness fails when the engine holds requests but finishes no step this long."),
) -> None:
    """Serve one engine on http://HOST:PORT (/v1/generate, /startup, /health, /ready,
    /metrics). Arguments after ``--`` are vLLM engine flags (``--kv-cache-dtype fp8``)."""
    from engine.embedded import EmbeddedEngine
    from engine.server import create_engine_app
    from engine.vllm_args import engine_arg_overrides

    settings = load_settings(profile=profile)
    if model not in settings.models:
        raise typer.BadParameter(f"unknown model {model!r}", param_hint="--model")
    chosen = dataclasses.replace(settings.engine_config(model), extra_args=tuple(ctx.args))
    try:  # refuse bad flags now, not after minutes of loading
        engine_arg_overrides(chosen.extra_args, set(chosen.engine_args_kwargs()))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    state = EngineServerState(EmbeddedEngine(chosen),
                              policy=LivenessPolicy(restart_grace_s, stall_s))
    config = uvicorn.Config(
        create_engine_app(state), host=host, port=port, log_level="info",
        timeout_graceful_shutdown=drain_s,
    )
    DrainingServer(config, state).run()
