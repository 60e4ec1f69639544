"""``llm-gateway keys``: create, list (with spend), update, rotate and revoke virtual API
keys in the metering database.

Works on the database of the chosen settings (``metering.database_url``), migrating it
first; a running gateway sees the change at once (keys are read per request). The
options follow ``POST`` / ``PATCH /admin/keys`` and are checked by the same rules.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from cli.terms import body, metadata_option, refused, with_database
from gateway.auth.key_records import KeyRecord
from gateway.auth.key_store import KeyStore
from gateway.http.admin_bodies import KeyCreateBody, KeyPatchBody
from gateway.metering.ledger import utcnow
from gateway.metering.pricing import usd_text
from gateway.metering.spend import PeriodSpend, period_spend

app = typer.Typer(help="Virtual API keys: one tenant each, with models, expiry, budget and "
                       "limits.")
console = Console()

BUDGET = typer.Option(None, "--budget-usd", help="Budget in USD per period, e.g. 25.00.")
PERIOD = typer.Option(None, "--budget-period", help="Budget period: day or month.")
RPM = typer.Option(None, "--rpm", min=1, help="Requests per minute.")
TPM = typer.Option(None, "--tpm", min=1, help="Tokens per minute (prompt + max_tokens x n).")
PARALLEL = typer.Option(None, "--max-parallel", min=1, help="Requests in flight at once.")
MODELS = typer.Option(None, "--model", help="A model the key may use (repeat; default: all).")
EXPIRES = typer.Option(None, "--expires-at", help="RFC 3339 time, e.g. 2027-01-01T00:00:00Z.")
METADATA = typer.Option(None, "--metadata", help='A JSON object, e.g. \'{"team": "search"}\'.')
NAME = typer.Option(None, "--name", help="A label for the key.")
CACHE = typer.Option(None, "--response-cache/--no-response-cache",
                     help="Answer this key's repeatable requests from the response cache "
                          "(default: the gateway's response_cache.enabled_by_default).")
WEIGHT = typer.Option(None, "--weight", min=0.001, max=1000.0,
                      help="Share of a saturated model's tokens relative to other tenants "
                           "(default 1; a key's replaces its tenant's).")
PRIORITY = typer.Option(None, "--priority", min=0, max=9,
                        help="Highest priority band (0-9) its requests may ask for, and their "
                             "default (a key's replaces its tenant's; default 0).")
AS_JSON = typer.Option(False, "--json", help="Print JSON.")
PROFILE = typer.Option(None, "--profile", help="Settings profile.")


def _terms(budget_usd: str | None, budget_period: str | None, rpm: int | None,
           tpm: int | None, max_parallel: int | None, models: list[str] | None,
           expires_at: str | None, metadata: str | None, name: str | None,
           response_cache: bool | None, weight: float | None = None,
           priority: int | None = None) -> dict[str, Any]:
    return {"budget_usd": budget_usd, "budget_period": budget_period, "rpm": rpm, "tpm": tpm,
            "max_parallel_requests": max_parallel, "models": models,
            "expires_at": expires_at, "metadata": metadata_option(metadata), "name": name,
            "response_cache": response_cache, "weight": weight, "priority": priority}


def _print(record: KeyRecord, token: str | None, as_json: bool, what: str) -> None:
    if as_json:
        typer.echo(json.dumps({**record.as_json(), **({"key": token} if token else {})}))
        return
    console.print(f"{what} key {record.key_id} for tenant {record.tenant}"
                  + (" (shown once):" if token else ""))
    if token:
        typer.echo(token)


@app.command("create")
def create(
    tenant: str = typer.Option(..., help="The tenant that owns the key (and pays)."),
    budget_usd: str = BUDGET, budget_period: str = PERIOD, rpm: int = RPM, tpm: int = TPM,
    max_parallel: int = PARALLEL, model: list[str] = MODELS, expires_at: str = EXPIRES,
    metadata: str = METADATA, name: str = NAME, response_cache: bool = CACHE,
    weight: float = WEIGHT, priority: int = PRIORITY,
    as_json: bool = AS_JSON, profile: str = PROFILE,
) -> None:
    """Create a key and print it. It is shown once: only its hash is stored."""
    given = _terms(budget_usd, budget_period, rpm, tpm, max_parallel, model, expires_at,
                   metadata, name, response_cache, weight, priority)
    request = body(KeyCreateBody, {"tenant": tenant, **given})
    terms = refused(request.terms)
    record, token = refused(lambda: with_database(
        profile, lambda engine: KeyStore(engine).create(tenant, terms)))
    _print(record, token, as_json, "created")


@app.command("update")
def update(
    key_id: str = typer.Argument(..., help="The key's id (see `keys list`)."),
    budget_usd: str = BUDGET, budget_period: str = PERIOD, rpm: int = RPM, tpm: int = TPM,
    max_parallel: int = PARALLEL, model: list[str] = MODELS, expires_at: str = EXPIRES,
    metadata: str = METADATA, name: str = NAME, response_cache: bool = CACHE,
    weight: float = WEIGHT, priority: int = PRIORITY,
    clear: list[str] = typer.Option(None, "--clear", help="Unset a field (repeat): budget_usd, "
                                    "rpm, tpm, max_parallel_requests, models (all models), "
                                    "expires_at, name, metadata, response_cache, weight, "
                                    "priority."),
    as_json: bool = AS_JSON, profile: str = PROFILE,
) -> None:
    """Change a live key: only the options given (and the fields --clear names) change."""
    given = _terms(budget_usd, budget_period, rpm, tpm, max_parallel, model, expires_at,
                   metadata, name, response_cache, weight, priority)
    patch = body(KeyPatchBody, given, clear)
    record = refused(lambda: with_database(
        profile, lambda engine: KeyStore(engine).update(key_id, patch.apply), announce=True))
    if record is None:
        console.print(f"no live key {key_id!r}")
        raise typer.Exit(1)
    _print(record, None, as_json, "updated")


@app.command("rotate")
def rotate(
    key_id: str = typer.Argument(..., help="The key's id (see `keys list`)."),
    grace_s: float = typer.Option(0, "--grace-s", min=0,
                                  help="Seconds the old secret keeps working."),
    as_json: bool = AS_JSON, profile: str = PROFILE,
) -> None:
    """Issue a new secret for the key (same id, limits and spend) and print it once."""
    rotated = refused(lambda: with_database(
        profile, lambda engine: KeyStore(engine).rotate(key_id, grace_s), announce=True))
    if rotated is None:
        console.print(f"no live key {key_id!r}")
        raise typer.Exit(1)
    _print(*rotated, as_json, "rotated")


def _period_spent(record: KeyRecord, spent: PeriodSpend) -> str:
    return usd_text(spent.of(record.key_id, record.quota.budget_period))


def _table(records: list[KeyRecord], spent: PeriodSpend) -> Table:
    table = Table("id", "tenant", "name", "models", "budget", "spent", "rpm", "tpm",
                  "parallel", "expires", "created", "revoked")
    for r in records:
        q, allowance = r.quota, r.terms.allowance
        budget = f"{q.budget_usd} USD/{q.budget_period}" if q.budget_usd is not None else "-"
        models = ",".join(sorted(allowance.models)) if allowance.models else "all"
        expires = r.terms.expires_at
        table.add_row(r.key_id, r.tenant, r.name or "", models, budget, _period_spent(r, spent),
                      str(q.rpm or "-"), str(q.tpm or "-"), str(allowance.max_parallel or "-"),
                      expires.isoformat(timespec="seconds") if expires else "never",
                      r.created_at.isoformat(timespec="seconds"),
                      r.revoked_at.isoformat(timespec="seconds") if r.revoked_at else "")
    return table


@app.command("list")
def list_keys(
    tenant: str = typer.Option(None, help="Only this tenant's keys."),
    include_revoked: bool = typer.Option(False, "--all", help="Include revoked keys."),
    as_json: bool = AS_JSON, profile: str = PROFILE,
) -> None:
    """List keys (never their secrets) with what each spent in its budget period."""
    async def read(engine: AsyncEngine) -> tuple[list[KeyRecord], PeriodSpend]:
        records = await KeyStore(engine).list(tenant, include_revoked)
        return records, await period_spend(engine, "key", utcnow())

    records, spent = with_database(profile, read)
    if as_json:
        typer.echo(json.dumps([{**r.as_json(), "period_spend_usd": _period_spent(r, spent)}
                               for r in records]))
        return
    console.print(_table(records, spent))


@app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="The key's id (see `keys list`)."),
    profile: str = PROFILE,
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    if not with_database(profile, lambda engine: KeyStore(engine).revoke(key_id), announce=True):
        console.print(f"no live key {key_id!r}")
        raise typer.Exit(1)
    console.print(f"revoked {key_id}")
