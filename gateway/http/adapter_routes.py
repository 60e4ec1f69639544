"""``/admin/adapters``: LoRA adapters served on a base model, chosen by ``model``. Admin
only. Registered adapters are kept in the ledger database: every gateway loads them at
start and follows changes made through the others (gateway/metering/adapter_feed.py);
without metering they live in this gateway's memory only."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from engine.replica_adapters import AdapterLoadError
from engine.routing import ReplicaRouter
from gateway.errors import ConflictError, InvalidRequestError, NotFoundError
from gateway.http.admin_routes import require_admin
from gateway.http.state import GatewayState, gateway_state
from gateway.metering.adapter_store import AdapterStore
from gateway.serving.accounting import Principal
from gateway.serving.adapters import NAME, Adapter
from gateway.serving.reasoning import Reasoner
from gateway.serving.registry import ServedModel

router = APIRouter(prefix="/admin/adapters")
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Money = Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=6)]


class AdapterPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: Money = Decimal(0)  # USD per 1M tokens
    completion: Money = Decimal(0)


class AdapterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    base_model: Name
    path: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    price: AdapterPrice = Field(default_factory=AdapterPrice)
    tenants: list[Name] = Field(default_factory=list, max_length=256)
    keys: list[Name] = Field(default_factory=list, max_length=256)
    reasoning_parser: Name | None = None  # vLLM's parser name; None: the base model's


def _store(state: GatewayState) -> AdapterStore | None:
    return None if state.metering is None else AdapterStore(state.metering.database)


def _lora_rank(path: Path) -> int:
    config = path / "adapter_config.json"
    try:
        found = path.is_absolute() and config.is_file()
    except (OSError, ValueError):  # a name the file system refuses (NUL, too long)
        found = False
    if not found:
        raise InvalidRequestError(f"{str(path)[:256]!r} is not an absolute path to a peft "
                                  "adapter folder (adapter_config.json)", param="path")
    try:
        return int(json.loads(config.read_text())["r"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidRequestError(f"{config}: no LoRA rank 'r'", param="path") from exc


def _base(state: GatewayState, body: AdapterBody) -> ServedModel:
    """The base model, served here as a generating model with LoRA on and rank room."""
    names = {m.name for m in state.models} | {u.model.name for u in state.upstreams}
    if body.name in names or state.models.adapters.get(body.name) is not None:
        raise ConflictError(f"a model or adapter named {body.name!r} exists", param="name")
    base = next((m for m in state.models if m.name == body.base_model), None)
    if base is None or base.task != "generate":
        raise InvalidRequestError(f"{body.base_model!r} is not a generating model served here",
                                  param="base_model")
    settings = state.settings.models[base.name]
    if not settings.max_loras:
        raise InvalidRequestError(f"{base.name} serves no LoRA adapters (max_loras is 0)",
                                  param="base_model")
    if isinstance(base.engine, ReplicaRouter):
        if not Path(body.path).is_absolute():  # a folder on the replicas: they check it
            raise InvalidRequestError("path must be absolute (a folder on the replicas)",
                                      param="path")
        return base
    if (rank := _lora_rank(Path(body.path))) > settings.max_lora_rank:
        raise InvalidRequestError(f"the adapter's rank {rank} exceeds {base.name}'s "
                                  f"max_lora_rank {settings.max_lora_rank}", param="path")
    return base


async def _preload(base: ServedModel, adapter: Adapter) -> None:
    """Replicas: load it on one now, so what they refuse (a folder they cannot read, a rank
    past their ``--max-lora-rank``) is this registration's 400 rather than a request's 503."""
    if not isinstance(base.engine, ReplicaRouter):
        return  # the embedded engine: checked above, loaded by its first request
    try:
        await base.engine.preload(adapter.target)
    except AdapterLoadError as exc:
        raise InvalidRequestError(f"the replicas refused the adapter: {exc.reason}",
                                  param="path") from exc


def _reasoner(name: str | None, base: ServedModel) -> Reasoner | None:
    if name is None:
        return None
    try:
        return Reasoner(name, base.tokenizer)
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param="reasoning_parser") from exc


@router.post("", status_code=201)
async def create_adapter(
    body: AdapterBody,
    state: GatewayState = Depends(gateway_state),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    """Register an adapter; a name taken by a model or adapter is a 409."""
    base = _base(state, body)
    reasoning = _reasoner(body.reasoning_parser, base)
    try:
        adapter = Adapter(body.name, base.name, body.path, body.price.prompt,
                          body.price.completion, tuple(body.tenants), tuple(body.keys),
                          body.reasoning_parser)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from exc
    await _preload(base, adapter)
    if (store := _store(state)) is not None:
        adapter = await store.create(adapter)
    state.models.adapters.put(adapter, reasoning)
    await _announce(state)
    return adapter.as_json()


@router.get("")
async def list_adapters(
    state: GatewayState = Depends(gateway_state),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    return {"object": "list", "data": [a.as_json() for a in state.models.adapters]}


@router.get("/{name}")
async def get_adapter(
    name: str,
    state: GatewayState = Depends(gateway_state),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    adapter = state.models.adapters.get(name)
    if adapter is None:
        raise NotFoundError(f"no adapter {name[:128]!r}")
    return adapter.as_json()


@router.delete("/{name}")
async def delete_adapter(
    name: str,
    state: GatewayState = Depends(gateway_state),
    _admin: Principal = Depends(require_admin),
) -> dict[str, Any]:
    """Unregister: new requests for it are 404s (running ones finish on it)."""
    if not NAME.fullmatch(name):  # never a valid name: nothing to ask the database
        raise NotFoundError(f"no adapter {name[:128]!r}")
    stored = (store := _store(state)) is not None and await store.delete(name)
    if not state.models.adapters.remove(name) and not stored:
        raise NotFoundError(f"no adapter {name!r}")
    await _announce(state)
    return {"object": "adapter", "id": name, "deleted": True}


async def _announce(state: GatewayState) -> None:
    if state.metering is not None:
        await state.metering.adapter_feed.changed()


async def sync_adapters(state: GatewayState) -> None:
    """Serve what the database holds (at start, then on each change another gateway
    announces, and periodically): new and changed adapters whose base model this gateway
    serves are put in the catalog, ones no longer registered are taken out."""
    if (store := _store(state)) is None:
        return
    served = {m.name: m for m in state.models}
    stored = {a.name: a for a in await store.list() if a.base_model in served}
    catalog = state.models.adapters
    for gone in [a.name for a in catalog if a.name not in stored]:
        catalog.remove(gone)
    for name, adapter in stored.items():
        if catalog.get(name) != adapter:
            catalog.put(adapter, _reasoner(adapter.reasoning_parser, served[adapter.base_model]))


async def follow_adapters(state: GatewayState) -> None:
    """At start: load the registered adapters, then follow changes made elsewhere."""
    await sync_adapters(state)
    if state.metering is not None:
        await state.metering.adapter_feed.start(lambda: sync_adapters(state))
