"""``llm-gateway engine serve`` and ``engine gate``: replicas for remote mode.

``serve`` runs a replica of a model on this machine (CPU replicas, tests): vLLM's stock
server with the model's settings on 127.0.0.1, behind the replica gate on the public port
(engine/launcher.py, engine/replica_server.py). ``gate`` is the gate alone, for a vLLM of
another container: the chart's engine pods run it as a sidecar from the gateway's image.
The gateway reaches replicas through ``replicas`` / ``replicas_dns`` in the model's settings.
``--model`` picks the model's engine settings from the same configs as the gateway; vLLM
engine flags after ``--`` are passed on (engine/vllm_args.py).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import typer

from engine.config import EngineConfig
from engine.errors import EngineError
from engine.launcher import API_KEY_ENV, GateBind, replica_launch
from engine.quantization.capability import adapt_to_hardware, require_supported
from engine.replica_gate import GatePolicy
from engine.replica_server import free_loopback_port, serve_beside, serve_sidecar
from gateway.settings import Settings, load_settings

app = typer.Typer(help="Run engine replicas for remote mode.", no_args_is_help=True)
HOST_HELP = f"Public bind address (beyond loopback: {API_KEY_ENV} must be set)."


def replica_config(settings: Settings, model: str, extra: Sequence[str]) -> EngineConfig:
    """The model's engine as its settings make it (LoRA's flags included), then ``extra``."""
    config = settings.engine_config(model)
    return dataclasses.replace(config, extra_args=(*config.extra_args, *extra))


@app.command("serve", context_settings={"allow_extra_args": True,
                                         "ignore_unknown_options": True})
def serve(
    ctx: typer.Context,
    model: str = typer.Option(..., help="The model to serve (a key of configs/models.yaml)."),
    profile: str = typer.Option(None, help="Settings profile (configs/profiles/*.yaml)."),
    host: str = typer.Option("127.0.0.1", help=HOST_HELP),
    port: int = typer.Option(8001, help="Public port (the gate's)."),
    engine_port: int = typer.Option(0, help="vLLM's own port on 127.0.0.1 (0: a free one)."),
    drain_s: int = typer.Option(300, help="On SIGTERM, requests in flight get this long."),
) -> None:
    """Serve MODEL on http://HOST:PORT: POST /inference/v1/generate and /inference/v1/
    abort_requests, adapter load/unload when LoRA is on (or /v1/embeddings for a pooling
    model) with the key from VLLM_API_KEY,
    GET /health and /metrics without; every other path answers 404. vLLM's own server runs
    on 127.0.0.1:ENGINE-PORT. Arguments after ``--`` are vLLM engine flags."""
    settings = load_settings(profile=profile)
    if model not in settings.models:
        raise typer.BadParameter(f"unknown model {model!r}", param_hint="--model")
    chosen = replica_config(settings, model, ctx.args)
    try:
        require_supported(chosen)  # a clear error before vLLM tries the kernels
        launch = replica_launch(adapt_to_hardware(chosen), host, port,
                                engine_port or free_loopback_port(),
                                api_key=os.environ.get(API_KEY_ENV), shutdown_timeout_s=drain_s)
    except (ValueError, EngineError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"gate on http://{host}:{port} -> {launch.gate.upstream}", err=True)
    typer.echo(" ".join(launch.engine.argv), err=True)
    raise typer.Exit(serve_beside(launch.engine, launch.gate))


@app.command("gate")
def gate(
    task: str = typer.Option("generate", help="generate: /inference/v1/generate and "
                             "abort_requests; embed: /v1/embeddings."),
    host: str = typer.Option("127.0.0.1", help=HOST_HELP),
    port: int = typer.Option(8001, help="Public port."),
    engine_port: int = typer.Option(8002, help="vLLM's port on 127.0.0.1."),
    drain_s: int = typer.Option(300, help="After SIGTERM and vLLM's exit, streams in flight "
                                "get this long."),
) -> None:
    """The replica gate alone, in front of a vLLM on 127.0.0.1:ENGINE-PORT (the chart's
    engine pods): the key (VLLM_API_KEY) on the model's paths, /health and /metrics open,
    404 for everything else. On SIGTERM it serves until vLLM has closed its port."""
    try:
        policy = GatePolicy(task, os.environ.get(API_KEY_ENV) or None)  # type: ignore[arg-type]
        bind = GateBind(host, port, engine_port, policy)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(f"gate on http://{host}:{port} -> {bind.upstream}", err=True)
    raise typer.Exit(serve_sidecar(bind, drain_s))
