"""``llm-gateway bench``: every performance claim, measured side by side in one run."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.errors import ModelNotPreparedError
from gateway.settings import Settings, load_settings

if TYPE_CHECKING:
    from bench.llamacpp import LlamaCppPeer

console = Console()
_RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
_README = _RESULTS.parent.parent / "README.md"


def _peer_model(url: str, model: str | None) -> str:
    if model:
        return model
    try:
        response = httpx.get(f"{url}/models", timeout=30)
        response.raise_for_status()
        return str(response.json()["data"][0]["id"])
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
        raise typer.BadParameter(f"cannot list models at {url}: {exc}",
                                 param_hint="--peer") from exc


LLAMA_CPP = "llama.cpp"
FAIR_SHARE = "fair-share"  # its own run: two gateway starts (first-come, fair), two tenants
_FAIR_QUICK = ["--seats", "4", "--reserve", "0.25", "--phase-s", "12", "--unloaded-s", "3",
               "--long-tokens", "16"]


def _fair_share(out: Path, note: str, quick: bool) -> None:
    """Issue #32's benchmark (bench/fair_share.py): B's TTFT while A saturates, shares."""
    from bench import fair_share

    args = fair_share.options(["--out", str(out), "--note", note,
                               *(_FAIR_QUICK if quick else [])])
    with console.status("fair share: a gateway first-come, then one with the fair queue "
                        f"({args.seats} seats, phases of {args.phase_s:.0f} s)"):
        files = fair_share.run(args)
    for path in files:
        console.print(f"wrote {path}")


def _llama_cpp(settings: Settings, model: str, logs: Path) -> LlamaCppPeer:
    """Build llama-cpp-python once (cached), then pick the port its server will use."""
    from bench.llamacpp import BuildError, LlamaCppPeer, PeerBuild, gguf_path

    build = PeerBuild()
    try:
        gguf = gguf_path(settings, model)
        if build.is_built():
            return LlamaCppPeer.prepare(build, gguf, model, logs)
        with console.status(f"building llama-cpp-python {build.version} from source "
                            f"into {build.venv} (once; ~10 min on 2 cores; log {build.log})"):
            return LlamaCppPeer.prepare(build, gguf, model, logs)
    except (BuildError, ModelNotPreparedError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--peer") from exc


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _v1(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def bench(
    quick: bool = typer.Option(False, help="Tiny sizes: a smoke test (numbers meaningless)."),
    sections: str = typer.Option(
        "overhead,batching,speculation,precision,peer,ceiling",
        help="Comma-separated sections to run; also fair-share (issue #32, ~15 min)."),
    peer: str = typer.Option(
        None, help="An OpenAI-compatible server to compare (URL), or `llama.cpp`: build "
        "llama-cpp-python (cached) and start its server on the GGUF the model ships as."),
    peer_model: str = typer.Option(None, help="Model name at --peer (default: its first)."),
    gateway_url: str = typer.Option(
        None, help="Measure this running gateway instead of starting engines."),
    api_key: str = typer.Option(None, envvar="LLMGW_BENCH_API_KEY",
                                help="Bearer key for --gateway-url (admin key: acceptance)."),
    model: str = typer.Option(None, help="Model to measure (default: default_model)."),
    profile: str = typer.Option("cpu", help="Settings profile for the started gateways."),
    draft: Path = typer.Option(None, help="Trained draft model folder for speculation."),
    kv_cache_gib: int = typer.Option(None, help="KV cache per engine (GiB; default: config)."),
    min_free_gib: float = typer.Option(0.0, help="Wait for this much free memory per start."),
    out: Path = typer.Option(_RESULTS, help="Folder for the JSON, Markdown and plots."),
    max_tokens: int = typer.Option(None, help="Override max_tokens per request (128)."),
    levels: str = typer.Option(None, help="Override every section's streams, e.g. 1,16."),
    note: str = typer.Option("", help="A note stored with the results (e.g. machine busy)."),
    update_readme: bool = typer.Option(False, help="Put the tables and plots in README.md."),
    kind: str = typer.Option("", help="Result files <date>-<machine>-<kind>.* (e.g. peer)."),
) -> None:
    """Gateway vs engine, batching, speculation, precision, a peer, and the bandwidth ceiling."""
    from bench.load import Endpoint
    from bench.report import readme_block
    from bench.report import update_readme as write_readme
    from bench.runner import RunOptions
    from bench.session import BenchRequest, prepare, run
    from bench.targets import LaunchOptions

    chosen_sections = tuple(s.strip() for s in sections.split(",") if s.strip())
    if FAIR_SHARE in chosen_sections:
        _fair_share(out, note, quick)
        chosen_sections = tuple(s for s in chosen_sections if s != FAIR_SHARE)
        if not chosen_sections:
            return
    settings = load_settings(profile=profile)
    chosen = model or settings.default_model or next(iter(settings.models))
    external = Endpoint("gateway", _v1(gateway_url), chosen, api_key) if gateway_url else None
    # Server logs of the targets this run starts (none with --gateway-url).
    logs = Path(tempfile.gettempdir() if external else tempfile.mkdtemp(prefix="llmgw-bench-"))
    peer_endpoint, peer_launch = None, None
    if peer == LLAMA_CPP:
        managed = _llama_cpp(settings, chosen, logs)
        peer_endpoint, peer_launch = managed.endpoint, managed.started
    elif peer:
        peer_endpoint = Endpoint("peer", _v1(peer), _peer_model(_v1(peer), peer_model))
    launch = LaunchOptions(settings, profile, kv_cache_gib, min_free_gib, 900, logs)
    request = BenchRequest(
        settings=settings, model=chosen, quick=quick,
        sections=chosen_sections,
        options=RunOptions(launch, external, peer_launch), out_dir=out, peer=peer_endpoint,
        draft_path=draft, note=note, max_tokens=max_tokens, kind=kind,
        levels=tuple(int(x) for x in levels.split(",")) if levels else ())
    # A background run gets no SIGINT: SIGTERM must still stop the servers it started.
    signal.signal(signal.SIGTERM, _interrupt)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("measuring memory bandwidth", total=None)
        ctx, steps = prepare(request)
        progress.update(task, total=steps, completed=0)

        def report(description: str, advance: int) -> None:
            progress.update(task, description=description, advance=advance)

        doc, files = run(request, ctx, report)
    for path in files:
        console.print(f"wrote {path}")
    if external is None:
        console.print(f"server logs in {logs}")
    if update_readme:
        folder = os.path.relpath(out.resolve(), _README.parent)
        write_readme(_README, readme_block(doc, folder, ("overhead", "batching")))
        console.print(f"updated {_README}")
