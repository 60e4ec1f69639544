"""``llm-gateway quantize``: make the INT8 and 4-bit variants of a model (llmcompressor).

The work runs in ``.venv-quant`` (``scripts/quant-env.sh``) as a subprocess; its progress
drives a rich progress bar here. Finished folders carry their recipe and are not redone.
"""

from __future__ import annotations

import subprocess

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.errors import QuantizationError
from engine.quantization import events, runner
from engine.quantization.recipes import METHODS, recipe_for
from gateway.settings import Settings, load_settings

console = Console()
SUFFIX = {"w8a8-int8": "w8a8", "w4a16-awq": "w4a16"}


def plan(settings: Settings, model: str | None, method: str | None,
         every: bool, samples: int | None = None) -> list[tuple[str, runner.QuantJob]]:
    """(variant name, job) pairs for the request; ``ValueError`` explains a bad one."""
    if every:
        pairs: list[tuple[str, str, str]] = [(name, m.quantized.base, m.quantized.method)
                 for name, m in settings.models.items() if m.quantized is not None]
    elif model is None:
        raise ValueError("give --model (and --method), or --all")
    elif model in settings.models and settings.models[model].quantized is not None:
        spec = settings.models[model].quantized
        assert spec is not None
        if method not in (None, spec.method):
            raise ValueError(f"{model} is configured as {spec.method}, not {method}")
        pairs = [(model, spec.base, spec.method)]
    elif model not in settings.models:
        raise ValueError(f"unknown model {model!r}")
    elif method is None:
        raise ValueError(f"--method is required: one of {', '.join(METHODS)}")
    else:
        pairs = [(_variant_name(settings, model, method), model, method)]
    jobs = []
    for name, base, chosen in pairs:
        recipe = recipe_for(chosen)
        if samples is not None:
            recipe = recipe.scaled(samples)
        known = name in settings.models
        output = settings.model_path(name) if known else settings.model_cache / name
        jobs.append((name, runner.QuantJob(settings.model_path(base), recipe, output)))
    return jobs


def _variant_name(settings: Settings, base: str, method: str) -> str:
    recipe_for(method)  # rejects unknown methods
    for name, model in settings.models.items():
        if model.quantized is not None and (model.quantized.base, model.quantized.method) == (
            base, method):
            return name
    return f"{base}-{SUFFIX[method]}"


def quantize(
    model: str = typer.Option(None, help="Base model (with --method) or a configured variant."),
    method: str = typer.Option(None, help=f"One of: {', '.join(METHODS)}."),
    every: bool = typer.Option(False, "--all", help="Every quantized variant in the configs."),
    samples: int = typer.Option(None, help="Calibration chats (default: the recipe's)."),
    force: bool = typer.Option(False, help="Redo even when the folder is up to date."),
    nice: int = typer.Option(10, help="Niceness of the worker (machines are shared)."),
    profile: str = typer.Option(None, help="Settings profile."),
) -> None:
    """Quantize with llmcompressor into compressed-tensors folders that vLLM serves."""
    settings = load_settings(profile=profile)
    try:
        jobs = plan(settings, model, method, every, samples)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    for name, job in jobs:
        if not force and job.recorded() is not None:
            console.print(f"{name}: up to date at {job.output}")
            continue
        _ensure_environment()
        try:
            record = _run_with_bar(name, job, nice)
        except QuantizationError as exc:
            console.print(f"[red]{name}: {exc}[/red]")
            raise typer.Exit(1) from exc
        seconds = record["seconds"]
        console.print(f"{name}: {job.recipe.algorithm} in {seconds} s -> {job.output}")


QUANT_ENV = runner.REPO / "scripts" / "quant-env.sh"


def _ensure_environment() -> None:
    """llmcompressor's own environment (.venv-quant), built on first use (serving never
    needs it, so setup does not build it); a no-op once its stamp matches."""
    with console.status("quantization environment (.venv-quant): checking, and on first use "
                        "installing llmcompressor (a few minutes)"):
        done = subprocess.run([str(QUANT_ENV)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        console.print(f"[red]{QUANT_ENV} failed ({done.returncode}):[/red]\n{done.stderr[-2000:]}")
        raise typer.Exit(1)


def _run_with_bar(name: str, job: runner.QuantJob, nice: int) -> dict[str, object]:
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task(f"{name}: starting", total=1)

        def show(step: events.Progress) -> None:
            progress.update(task, description=f"{name}: {step.stage}", completed=step.done,
                            total=step.total)

        return runner.run(job, show, niceness=nice)
