"""LoRA adapters served on a base model: what each is (``Adapter``), who may see it, and the
catalog the gateway serves them from (``AdapterCatalog``, filled from the ledger database by
``/admin/adapters``). A request names an adapter as its ``model``; it runs on the base
model's engine with the adapter attached (``LoraEngine``), is billed at the adapter's price
and recorded with its name on the ledger row. To a caller the adapter is not allowed for,
it does not exist (a 404, and absent from ``/v1/models``)."""

from __future__ import annotations

import dataclasses
import re
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.protocol import (
    EmbeddingOutput,
    EmbeddingRequest,
    Engine,
    EngineOutput,
    EngineStats,
    GenerationRequest,
    LoraTarget,
)
from engine.view import EngineView
from gateway.serving.accounting import Principal
from gateway.serving.reasoning import Reasoner

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_LISTED = 256  # tenants or keys one adapter lists


@dataclass(frozen=True)
class Adapter:
    """One registered adapter. Prices are USD per 1M tokens (Decimal, as the price table);
    ``tenants`` and ``keys`` both empty: every caller may use it."""

    name: str
    base_model: str
    path: str
    prompt_price: Decimal = Decimal(0)
    completion_price: Decimal = Decimal(0)
    tenants: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()
    reasoning_parser: str | None = None  # None: the base model's
    created: int = 0  # Unix time of its registration

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise ValueError(f"adapter name {self.name!r}: 1-128 letters, digits, '.', '_', "
                             "'-', starting with a letter or digit")
        if not self.base_model or not self.path:
            raise ValueError("an adapter needs its base model and path")
        if len(self.tenants) > MAX_LISTED or len(self.keys) > MAX_LISTED:
            raise ValueError(f"at most {MAX_LISTED} tenants and {MAX_LISTED} keys")
        for price in (self.prompt_price, self.completion_price):
            if not price.is_finite() or price < 0:
                raise ValueError("adapter prices must be finite amounts >= 0")

    @property
    def lora_id(self) -> int:
        """The engine's integer id for the adapter: stable per name, on every gateway."""
        return zlib.crc32(self.name.encode()) % (2**31 - 1) + 1

    @property
    def target(self) -> LoraTarget:
        return LoraTarget(self.name, self.lora_id, self.path)

    def allows(self, principal: Principal) -> bool:
        if principal.is_admin or not (self.tenants or self.keys):
            return True
        return principal.tenant in self.tenants or (
            principal.key_id is not None and principal.key_id in self.keys)

    def as_json(self) -> dict[str, Any]:
        return {"object": "adapter", "id": self.name, "base_model": self.base_model,
                "path": self.path, "created": self.created,
                "price": {"prompt": str(self.prompt_price),
                          "completion": str(self.completion_price)},
                "tenants": list(self.tenants), "keys": list(self.keys),
                "reasoning_parser": self.reasoning_parser}


class LoraEngine(EngineView):
    """The base model's engine with one adapter attached to every generation (the base
    model's own entry starts and stops it)."""

    def __init__(self, base: Engine, target: LoraTarget) -> None:
        super().__init__(base)
        self._base = base
        self._target = target

    def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        return self._base.generate(dataclasses.replace(request, lora=self._target))

    async def embed(self, request: EmbeddingRequest) -> EmbeddingOutput:
        return await self._base.embed(request)

    async def abort(self, request_id: str) -> None:
        await self._base.abort(request_id)

    async def is_ready(self) -> bool:
        return await self._base.is_ready()

    def stats(self) -> EngineStats:
        return self._base.stats()


@dataclass(frozen=True)
class _Entry:
    adapter: Adapter
    reasoning: Reasoner | None


class AdapterCatalog:
    """The adapters this gateway serves, by name (kept in step with the database by the admin
    routes; loaded from it at start)."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def put(self, adapter: Adapter, reasoning: Reasoner | None) -> None:
        self._entries[adapter.name] = _Entry(adapter, reasoning)

    def remove(self, name: str) -> bool:
        return self._entries.pop(name, None) is not None

    def get(self, name: str) -> Adapter | None:
        entry = self._entries.get(name)
        return None if entry is None else entry.adapter

    def reasoning(self, name: str) -> Reasoner | None:
        entry = self._entries.get(name)
        return None if entry is None else entry.reasoning

    def visible(self, name: str, principal: Principal) -> Adapter | None:
        """The adapter if ``principal`` may use it; None as if it did not exist."""
        adapter = self.get(name)
        return adapter if adapter is not None and adapter.allows(principal) else None

    def __iter__(self) -> Iterator[Adapter]:
        return iter([entry.adapter for entry in self._entries.values()])
