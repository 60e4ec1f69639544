"""``llm-gateway models``: list and prepare the configured models."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.model_store import ModelSource, is_prepared
from gateway.settings import load_settings

app = typer.Typer(help="Prepare and list the models in configs/models.yaml.")
console = Console()


@app.command("list")
def list_models(profile: str = typer.Option(None, help="Settings profile.")) -> None:
    settings = load_settings(profile=profile)
    table = Table("model", "path", "prepared")
    for name in settings.models:
        path = settings.model_path(name)
        prepared = (path / "config.json").is_file()
        table.add_row(name, str(path), "yes" if prepared else "no")
    console.print(table)


@app.command("prepare")
def prepare(
    model: str = typer.Option(None, help="Model name (default: every model with a source)."),
    profile: str = typer.Option(None, help="Settings profile."),
) -> None:
    """Shipped weights into cached Hugging Face folders: GGUF converted, folders copied."""
    settings = load_settings(profile=profile)
    names = [model] if model else list(settings.models)
    for name in names:
        if name not in settings.models:
            raise typer.BadParameter(f"unknown model {name!r}", param_hint="--model")
        source = settings.model_source(name)
        target: Path = settings.model_path(name)
        if source is None:
            console.print(f"{name}: no source to prepare from; expecting files at {target}")
            continue
        _prepare_one(name, source, target)


def _prepare_one(name: str, source: ModelSource, target: Path) -> None:
    if is_prepared(target):
        console.print(f"{name}: ready at {target}")
        return
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"{name}: starting", total=3)

        def report(step: str, done: int, total: int) -> None:
            progress.update(task, description=f"{name}: {step}", completed=done, total=total)

        source.prepare_into(target, report)
    console.print(f"{name}: ready at {target}")
