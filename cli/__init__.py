"""``llm-gateway``: the command line. Each sub-command lives in its own module."""

from __future__ import annotations

import typer

from cli import adapters, bench, draft, engine, keys, models, quantize, serve, tenants


def build() -> typer.Typer:
    app = typer.Typer(help="An OpenAI-compatible gateway in front of vLLM.", no_args_is_help=True)
    app.command("serve")(serve.serve)
    app.add_typer(models.app, name="models")
    app.add_typer(keys.app, name="keys")
    app.add_typer(tenants.app, name="tenants")
    app.command("quantize")(quantize.quantize)
    app.command("bench")(bench.bench)
    app.add_typer(draft.app, name="draft")
    app.add_typer(engine.app, name="engine")
    app.add_typer(adapters.app, name="adapters")
    return app


def main() -> None:
    build()()
