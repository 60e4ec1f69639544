"""``llm-gateway engine serve``: a stock vLLM server with a model's settings (remote mode).

For CPU replicas and tests; on Kubernetes the chart runs the official vLLM image with the
same flags. The gateway reaches replicas through ``replicas`` / ``replicas_dns`` in the
model's settings. ``--model`` picks the model's engine settings from the same configs as the
gateway; vLLM engine flags after ``--`` are passed on (engine/vllm_args.py).
"""

from __future__ import annotations

import dataclasses
import os

import typer

from engine.errors import EngineError
from engine.launcher import API_KEY_ENV, server_launch
from engine.quantization.capability import adapt_to_hardware, require_supported
from gateway.settings import load_settings

app = typer.Typer(help="Run engine replicas for remote mode.", no_args_is_help=True)


@app.command("serve", context_settings={"allow_extra_args": True,
                                         "ignore_unknown_options": True})
def serve(
    ctx: typer.Context,
    model: str = typer.Option(..., help="The model to serve (a key of configs/models.yaml)."),
    profile: str = typer.Option(None, help="Settings profile (configs/profiles/*.yaml)."),
    host: str = typer.Option("127.0.0.1", help="Bind address (beyond loopback: "
                             f"{API_KEY_ENV} must be set)."),
    port: int = typer.Option(8001, help="Port."),
    drain_s: int = typer.Option(300, help="On SIGTERM, requests in flight get this long."),
) -> None:
    """Replace this process with vLLM's OpenAI server for MODEL on http://HOST:PORT
    (/inference/v1/generate, /v1/embeddings, /health, /metrics). The API key comes from
    VLLM_API_KEY. Arguments after ``--`` are vLLM engine flags (``--kv-cache-dtype fp8``)."""
    settings = load_settings(profile=profile)
    if model not in settings.models:
        raise typer.BadParameter(f"unknown model {model!r}", param_hint="--model")
    chosen = dataclasses.replace(settings.engine_config(model), extra_args=tuple(ctx.args))
    try:
        require_supported(chosen)  # a clear error before vLLM tries the kernels
        launch = server_launch(adapt_to_hardware(chosen), host, port,
                               api_key=os.environ.get(API_KEY_ENV), shutdown_timeout_s=drain_s)
    except (ValueError, EngineError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    typer.echo(" ".join(launch.argv), err=True)
    os.execve(launch.argv[0], list(launch.argv), {**os.environ, **launch.env})
