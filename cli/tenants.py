"""``llm-gateway tenants``: tenants with their own budget, limits and models, enforced on
top of each of their keys' (the stricter wins). Same rules as ``/admin/tenants``."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from cli.keys import (
    BUDGET,
    METADATA,
    MODELS,
    PARALLEL,
    PERIOD,
    PRIORITY,
    PROFILE,
    RPM,
    TPM,
    WEIGHT,
)
from cli.terms import body, metadata_option, refused, with_database
from gateway.auth.tenant_store import TenantRecord, TenantStore
from gateway.http.admin_bodies import (
    TenantCreateBody,
    TenantPatchBody,
    tenant_patch,
    tenant_terms,
)
from gateway.metering.ledger import utcnow
from gateway.metering.pricing import usd_text
from gateway.metering.spend import PeriodSpend, period_spend

app = typer.Typer(help="Tenants: a budget, limits and models shared by all of their keys.")
console = Console()
AS_JSON = typer.Option(False, "--json", help="Print JSON.")


def _given(budget_usd: str | None, budget_period: str | None, rpm: int | None,
           tpm: int | None, max_parallel: int | None, models: list[str] | None,
           metadata: str | None, weight: float | None,
           priority: int | None) -> dict[str, object]:
    return {"budget_usd": budget_usd, "budget_period": budget_period, "rpm": rpm, "tpm": tpm,
            "max_parallel_requests": max_parallel, "models": models,
            "metadata": metadata_option(metadata), "weight": weight, "priority": priority}


def _show(record: TenantRecord | None, name: str, as_json: bool, what: str) -> None:
    if record is None:
        console.print(f"no tenant {name!r}")
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(record.as_json()))
        return
    console.print(f"{what} tenant {record.name}")


@app.command("create")
def create(
    name: str = typer.Argument(..., help="The tenant's name (not admin or anonymous)."),
    budget_usd: str = BUDGET, budget_period: str = PERIOD, rpm: int = RPM, tpm: int = TPM,
    max_parallel: int = PARALLEL, model: list[str] = MODELS, metadata: str = METADATA,
    weight: float = WEIGHT, priority: int = PRIORITY,
    as_json: bool = AS_JSON, profile: str = PROFILE,
) -> None:
    """Create a tenant; its keys get its limits on top of their own."""
    given = _given(budget_usd, budget_period, rpm, tpm, max_parallel, model, metadata, weight,
                   priority)
    request = body(TenantCreateBody, {"name": name, **given})
    terms = refused(lambda: tenant_terms(request))
    record = refused(lambda: with_database(
        profile, lambda engine: TenantStore(engine).create(name, terms), announce=True))
    _show(record, name, as_json, "created")


@app.command("update")
def update(
    name: str = typer.Argument(..., help="The tenant's name."),
    budget_usd: str = BUDGET, budget_period: str = PERIOD, rpm: int = RPM, tpm: int = TPM,
    max_parallel: int = PARALLEL, model: list[str] = MODELS, metadata: str = METADATA,
    weight: float = WEIGHT, priority: int = PRIORITY,
    clear: list[str] = typer.Option(None, "--clear", help="Unset a field (repeat): "
                                    "budget_usd, rpm, tpm, max_parallel_requests, models, "
                                    "metadata, weight, priority."),
    as_json: bool = AS_JSON, profile: str = PROFILE,
) -> None:
    """Change a tenant: only the options given (and the fields --clear names) change."""
    given = _given(budget_usd, budget_period, rpm, tpm, max_parallel, model, metadata, weight,
                   priority)
    patch = body(TenantPatchBody, given, clear)
    record = refused(lambda: with_database(
        profile, lambda engine: TenantStore(engine).update(name, tenant_patch(patch)),
        announce=True))
    _show(record, name, as_json, "updated")


def _table(records: list[TenantRecord], spent: PeriodSpend) -> Table:
    table = Table("tenant", "models", "budget", "spent", "rpm", "tpm", "parallel", "created")
    for r in records:
        allowance = r.terms.allowance
        q = allowance.quota
        budget = f"{q.budget_usd} USD/{q.budget_period}" if q.budget_usd is not None else "-"
        table.add_row(r.name, ",".join(sorted(allowance.models)) if allowance.models else "all",
                      budget, usd_text(spent.of(r.name, q.budget_period)), str(q.rpm or "-"),
                      str(q.tpm or "-"), str(allowance.max_parallel or "-"),
                      r.created_at.isoformat(timespec="seconds"))
    return table


@app.command("list")
def list_tenants(as_json: bool = AS_JSON, profile: str = PROFILE) -> None:
    """List tenants with what each spent in its budget period."""
    async def read(engine: AsyncEngine) -> tuple[list[TenantRecord], PeriodSpend]:
        return await TenantStore(engine).list(), await period_spend(engine, "tenant", utcnow())

    records, spent = with_database(profile, read)
    if as_json:
        typer.echo(json.dumps([
            {**r.as_json(), "period_spend_usd": usd_text(
                spent.of(r.name, r.terms.allowance.quota.budget_period))} for r in records]))
        return
    console.print(_table(records, spent))
