"""``llm-gateway draft``: train, install and check speculative-decoding drafts."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from draft_models.kinds import DRAFT_MODEL, KINDS, DraftKind, kind_named
from draft_models.registry import (
    SHIPPED_DIR,
    DraftIncompatibleError,
    check_compatible,
    read_card,
)
from gateway.settings import Settings, load_settings

app = typer.Typer(help="Drafts that speculate for a served model (see docs/speculation.md).")
console = Console()


class _RichReporter:
    """Progress bars for the pipeline's stages."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: object = None

    def stage(self, name: str, total: int) -> None:
        self._task = self._progress.add_task(name, total=total, info="")

    def advance(self, done: int, total: int, info: str = "") -> None:
        self._progress.update(self._task, completed=done, total=total, info=info)  # type: ignore[arg-type]


def progress_columns() -> tuple[ProgressColumn, ...]:
    """Stage, bar, count, time, and the stage's latest info (loss, acceptance)."""
    return (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("{task.fields[info]}"))


def _target_dir(settings: Settings, target: str) -> Path:
    if target not in settings.models:
        raise typer.BadParameter(f"unknown model {target!r}", param_hint="--target")
    folder = settings.model_path(target)
    if not (folder / "config.json").is_file():
        raise typer.BadParameter(f"{folder} is not prepared; run `llm-gateway models prepare`")
    return folder


def _kind(arch: str) -> DraftKind:
    try:
        return kind_named(arch)
    except ValueError as exc:
        names = ", ".join(kind.name for kind in KINDS)
        raise typer.BadParameter(f"must be one of {names}", param_hint="--arch") from exc


@app.command("train")
def train(
    target: str = typer.Option(..., help="Served model to draft for (configs/models.yaml)."),
    steps: int = typer.Option(1200, help="Training steps (stops earlier on a plateau)."),
    layers: int = typer.Option(2, help="Decoder layers in the draft (arch draft_model)."),
    arch: str = typer.Option(DRAFT_MODEL.name, help="The kind of draft, named as the "
                             "speculation method that serves it: draft_model (or llama): a "
                             "small Llama draft; eagle: an EAGLE head reading the target's "
                             "hidden states; eagle3: an EAGLE-3 head with its own small "
                             "vocabulary."),
    draft_vocab: int = typer.Option(8192, help="Tokens an EAGLE-3 head drafts (its vocabulary)."),
    prompts: int = typer.Option(1536, help="Bundled prompts to distil on."),
    k: int = typer.Option(2, help="Draft tokens per step an EAGLE head is trained for."),
    ledger_prompts: Path = typer.Option(None, help="Opt-in: JSONL of logged chats to add."),
    self_prompts: int = typer.Option(0, help="Prompts the target writes itself (Magpie) to add."),
    init_from: Path = typer.Option(None, help="EAGLE-3: fine-tune this head folder (keeps its "
                                   "draft vocabulary) instead of starting a new one."),
    lr: float = typer.Option(1e-3, help="Peak learning rate."),
    out: Path = typer.Option(None, help="Draft folder (default: draft_models/shipped/<target>)."),
    work: Path = typer.Option(None, help="Data and checkpoints (default: the model cache)."),
    smoke: bool = typer.Option(False, help="A minutes-long run for CI: tiny data, 4 steps."),
    profile: str = typer.Option(None, help="Settings profile."),
) -> None:
    """Distil a draft from the target's own greedy answers; resumable."""
    from draft_models.pipeline import generate_data, train_draft, write_draft
    from draft_models.plan import BuildPlan

    settings = load_settings(profile=profile)
    target_dir = _target_dir(settings, target)
    work_dir = work or settings.model_cache / "draft-work" / target
    kind = _kind(arch)
    out_dir = out or SHIPPED_DIR / kind.shipped_name(target)
    if smoke:
        plan = BuildPlan.smoke(target, target_dir, work_dir, out_dir, kind=kind)
    else:
        plan = BuildPlan(target, target_dir, work_dir, out_dir, num_layers=layers, steps=steps,
                         prompts=prompts, ledger_file=ledger_prompts, kind=kind, k=k,
                         draft_vocab=draft_vocab, self_prompts=self_prompts,
                         init_head=init_from, lr=lr)
    with Progress(*progress_columns(), console=console) as progress:
        reporter = _RichReporter(progress)
        generate_data(plan, reporter)
        draft, result = train_draft(plan, reporter)
    folder = write_draft(plan, draft, result)
    console.print((folder / "REPORT.md").read_text())
    console.print(f"draft written to {folder}; `llm-gateway draft install` makes it servable")


@app.command("install")
def install(profile: str = typer.Option(None, help="Settings profile.")) -> None:
    """Materialise every shipped draft whose target is prepared (re-tie shared weights)."""
    from draft_models.materialize import materialize

    settings = load_settings(profile=profile)
    if not SHIPPED_DIR.is_dir():
        console.print(f"no shipped drafts: {SHIPPED_DIR} is missing")
        return
    shipped = sorted(p for p in SHIPPED_DIR.iterdir() if p.is_dir())
    for folder in shipped:
        target = str(read_card(folder)["target"]["name"])
        prepared = target in settings.models and (
            settings.model_path(target) / "config.json"
        ).is_file()
        if not prepared:
            console.print(f"{target}: target not prepared; skipped")
            continue
        dest = materialize(folder, settings.model_path(target), settings.model_cache)
        console.print(f"{target}: draft ready at {dest}")


@app.command("check")
def check(
    target: str = typer.Option(..., help="Served model."),
    draft: Path = typer.Option(..., help="Draft folder (Hugging Face layout)."),
    profile: str = typer.Option(None, help="Settings profile."),
) -> None:
    """Say whether ``draft`` shares the target's tokenizer and vocabulary, and what differs."""
    settings = load_settings(profile=profile)
    try:
        check_compatible(_target_dir(settings, target), draft)
    except DraftIncompatibleError as exc:
        console.print(f"[red]incompatible[/red]: {exc}")
        raise typer.Exit(1) from exc
    console.print(f"{draft} can speculate for {target}")
