"""``llm-gateway adapters``: train the project's think adapter; register, list and delete
LoRA adapters on a running gateway (``/admin/adapters``)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import typer
from rich.console import Console

from engine.lora.shipped import SHIPPED_ADAPTERS_DIR
from engine.lora.think_data import make_examples
from engine.lora.train import LoraPlan, train_lora
from gateway.settings import load_settings

app = typer.Typer(help="LoRA adapters: train the think adapter, register adapters.")
console = Console()
THINK_ADAPTER = "smollm2-135m-think"


@app.command("train")
def train(
    base: str = typer.Option("smollm2-135m-instruct", help="The served model it adapts."),
    out: Path = typer.Option(SHIPPED_ADAPTERS_DIR / THINK_ADAPTER, help="Adapter folder."),
    examples: int = typer.Option(2000, min=16, help="Generated training examples."),
    steps: int = typer.Option(120, min=1),
    batch_size: int = typer.Option(8, min=1),
    rank: int = typer.Option(8, min=1),
    lr: float = typer.Option(1e-3),
    seed: int = typer.Option(0),
    threads: int = typer.Option(2, min=1),
    profile: str = typer.Option("dev"),
) -> None:
    """Train the think adapter: answers start with a <think>...</think> span (CPU, minutes)."""
    settings = load_settings(profile=profile)
    model_dir = settings.model_path(base)
    if not (model_dir / "config.json").is_file():
        raise typer.BadParameter(f"{model_dir} is not prepared; run `llm-gateway models prepare`")
    plan = LoraPlan(rank=rank, alpha=2 * rank, steps=steps, batch_size=batch_size, lr=lr,
                    seed=seed, threads=threads)

    def progress(step: int, total: int, loss: float) -> None:
        if step == 1 or step % 10 == 0 or step == total:
            console.print(f"step {step}/{total} loss {loss:.4f}")

    report = train_lora(model_dir, make_examples(examples, seed), out, plan, progress)
    console.print(f"saved {out}: loss {report.first_loss:.3f} -> {report.last_loss:.3f} in "
                  f"{report.wall_s:.0f} s, {report.adapter_bytes / 1e6:.1f} MB")


URL = typer.Option("http://127.0.0.1:8000", "--url", help="The running gateway.")
ADMIN_KEY = typer.Option(..., "--admin-key", envvar="LLMGW_ADMIN_KEY",
                         help="The gateway's admin key (or LLMGW_ADMIN_KEY).")


def _call(method: str, url: str, admin_key: str, body: dict[str, Any] | None = None) -> Any:
    response = httpx.request(method, url, json=body, timeout=30,
                             headers={"authorization": f"Bearer {admin_key}"})
    if response.is_error:
        console.print(f"[red]{response.status_code}[/red] {response.text}")
        raise typer.Exit(1)
    return response.json()


@app.command("register")
def register(
    name: str = typer.Argument(..., help="The model name clients will pass."),
    base: str = typer.Option(..., "--base", help="The served base model."),
    path: Path | None = typer.Option(None, help="The peft adapter folder (default: the "
                                     "shipped adapter of this name)."),
    prompt_price: Decimal = typer.Option(Decimal(0), help="USD per 1M prompt tokens."),
    completion_price: Decimal = typer.Option(Decimal(0), help="USD per 1M completion tokens."),
    tenant: list[str] = typer.Option([], "--tenant", help="A tenant allowed (repeat)."),
    key: list[str] = typer.Option([], "--key", help="A key id allowed (repeat)."),
    reasoning_parser: str | None = typer.Option(None, help="vLLM's parser, e.g. olmo3."),
    url: str = URL,
    admin_key: str = ADMIN_KEY,
) -> None:
    """Register an adapter on a running gateway (POST /admin/adapters); no --tenant and no
    --key: every caller may use it."""
    folder = (path or SHIPPED_ADAPTERS_DIR / name).resolve()
    body = {"name": name, "base_model": base, "path": str(folder),
            "price": {"prompt": str(prompt_price), "completion": str(completion_price)},
            "tenants": tenant, "keys": key, "reasoning_parser": reasoning_parser}
    typer.echo(json.dumps(_call("POST", f"{url}/admin/adapters", admin_key, body)))


@app.command("list")
def list_adapters(url: str = URL, admin_key: str = ADMIN_KEY) -> None:
    """The adapters a running gateway serves (GET /admin/adapters)."""
    for adapter in _call("GET", f"{url}/admin/adapters", admin_key)["data"]:
        typer.echo(json.dumps(adapter))


@app.command("delete")
def delete(name: str, url: str = URL, admin_key: str = ADMIN_KEY) -> None:
    """Unregister an adapter (DELETE /admin/adapters/NAME)."""
    typer.echo(json.dumps(_call("DELETE", f"{url}/admin/adapters/{name}", admin_key)))
