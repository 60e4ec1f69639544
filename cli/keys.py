"""``llm-gateway keys``: create, list and revoke virtual API keys in the metering database.

Works on the database of the chosen settings (``metering.database_url``), migrating it
first; a running gateway sees the change at once (keys are read per request).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from typing import TypeVar

import typer
from rich.console import Console
from rich.table import Table

from gateway.auth.key_store import KeyRecord, KeyStore
from gateway.limits.quota import Quota
from gateway.metering.database import create_database_engine, migrate
from gateway.settings import load_settings

app = typer.Typer(help="Virtual API keys: one tenant each, with optional budget and limits.")
console = Console()
T = TypeVar("T")


def _with_store(profile: str | None, work: Callable[[KeyStore], Awaitable[T]]) -> T:
    settings = load_settings(profile=profile)

    async def run() -> T:
        engine = create_database_engine(settings.database_url())
        try:
            await migrate(engine)
            return await work(KeyStore(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _budget(text: str | None) -> Decimal | None:
    if text is None:
        return None
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise typer.BadParameter(f"not a decimal amount: {text!r}",
                                 param_hint="--budget-usd") from exc


@app.command("create")
def create(
    tenant: str = typer.Option(..., help="The tenant that owns the key (and pays)."),
    budget_usd: str = typer.Option(None, help="Budget in USD per period, e.g. 25.00."),
    budget_period: str = typer.Option("month", help="Budget period: day or month."),
    rpm: int = typer.Option(None, min=1, help="Requests per minute."),
    tpm: int = typer.Option(None, min=1, help="Tokens per minute (prompt + max_tokens x n)."),
    name: str = typer.Option(None, help="A label for the key."),
    response_cache: bool = typer.Option(
        None, "--response-cache/--no-response-cache",
        help="Answer this key's repeatable requests from the response cache "
             "(default: the gateway's response_cache.enabled_by_default)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (with the key)."),
    profile: str = typer.Option(None, help="Settings profile."),
) -> None:
    """Create a key and print it. It is shown once: only its hash is stored."""
    if budget_period not in ("day", "month"):
        raise typer.BadParameter("day or month", param_hint="--budget-period")
    try:
        quota = Quota(rpm=rpm, tpm=tpm, budget_usd=_budget(budget_usd),
                      budget_period="day" if budget_period == "day" else "month")
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    record, token = _with_store(profile, lambda store: store.create(tenant, quota, name,
                                                                           response_cache))
    if as_json:
        typer.echo(json.dumps({**record.as_json(), "key": token}))
        return
    console.print(f"key {record.key_id} for tenant {record.tenant} (shown once):")
    typer.echo(token)


def _table(records: list[KeyRecord]) -> Table:
    table = Table("id", "tenant", "name", "budget", "rpm", "tpm", "created", "revoked")
    for r in records:
        q = r.quota
        budget = f"{q.budget_usd} USD/{q.budget_period}" if q.budget_usd is not None else "-"
        table.add_row(r.key_id, r.tenant, r.name or "", budget, str(q.rpm or "-"),
                      str(q.tpm or "-"), r.created_at.isoformat(timespec="seconds"),
                      r.revoked_at.isoformat(timespec="seconds") if r.revoked_at else "")
    return table


@app.command("list")
def list_keys(
    tenant: str = typer.Option(None, help="Only this tenant's keys."),
    include_revoked: bool = typer.Option(False, "--all", help="Include revoked keys."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    profile: str = typer.Option(None, help="Settings profile."),
) -> None:
    """List keys (never their secrets)."""
    records = _with_store(profile, lambda store: store.list(tenant, include_revoked))
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in records]))
        return
    console.print(_table(records))


@app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="The key's id (see `keys list`)."),
    profile: str = typer.Option(None, help="Settings profile."),
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    if not _with_store(profile, lambda store: store.revoke(key_id)):
        console.print(f"no live key {key_id!r}")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")
