"""What ``keys`` and ``tenants`` share: the metering database of the chosen settings, and
command-line options turned into the admin API's bodies (one set of rules for both)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.auth.key_feed import announce
from gateway.errors import GatewayError
from gateway.limits.redis_guard import RedisGuard, connect
from gateway.metering.database import create_database_engine, migrate
from gateway.settings import load_settings

T = TypeVar("T")
B = TypeVar("B", bound=BaseModel)
CLEARABLE = ("name", "budget_usd", "rpm", "tpm", "max_parallel_requests", "models",
             "expires_at", "metadata", "response_cache", "weight", "priority")


def with_database(profile: str | None, work: Callable[[AsyncEngine], Awaitable[T]],
                  announce: bool = False) -> T:
    """Run ``work`` on the settings' metering database, migrated first. ``announce``: it
    changed a key or a tenant; with Redis configured, running gateways forget their cached
    keys at once (without it they see the change when their entries expire)."""
    settings = load_settings(profile=profile)

    async def run() -> T:
        engine = create_database_engine(settings.database_url())
        try:
            await migrate(engine)
            result = await work(engine)
        finally:
            await engine.dispose()
        if announce and settings.metering.redis_url:
            await _announce(settings.metering.redis_url, settings.metering.redis_timeout_s)
        return result

    return asyncio.run(run())


async def _announce(redis_url: str, timeout_s: float) -> None:
    redis = connect(redis_url, timeout_s)
    try:
        await announce(redis, RedisGuard(timeout_s))
    finally:
        await redis.aclose()


def metadata_option(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--metadata") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("a JSON object", param_hint="--metadata")
    return value


def body(kind: type[B], given: dict[str, Any], clear: list[str] | None = None) -> B:
    """The API body of ``kind`` with the options that were given (None: not given) and
    the fields ``--clear`` names set to null."""
    fields = {name: value for name, value in given.items() if value not in (None, [])}
    for name in clear or []:
        if name not in CLEARABLE:
            raise typer.BadParameter(f"one of {', '.join(CLEARABLE)}", param_hint="--clear")
        if name in fields:
            raise typer.BadParameter(f"{name} is both set and cleared", param_hint="--clear")
        fields[name] = None
    try:
        return kind.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise typer.BadParameter(f"{where}: {first.get('msg')}") from exc


def refused(work: Callable[[], T]) -> T:
    """``work``'s result; terms it refuses (or a name taken) become a usage error."""
    try:
        return work()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    except GatewayError as exc:
        raise typer.BadParameter(exc.message) from exc
