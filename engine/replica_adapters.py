"""LoRA adapters on one stock vLLM replica, loaded while it runs.

A replica started with LoRA on (``--enable-lora``) and ``VLLM_ALLOW_RUNTIME_LORA_UPDATING``
takes adapters by name at ``POST /v1/load_lora_adapter`` and lets them go at ``POST
/v1/unload_lora_adapter``; a generation then names the adapter as its ``model``. This record
is what one gateway knows a replica holds, least recently used first: a request for an adapter
the replica lacks loads it first (one load per adapter at a time, however many requests wait
for it), and past ``capacity`` (the model's ``max_loras``) the least recently used adapter that
no request of this gateway is running on is unloaded. A replica that restarted has lost its
adapters: the router forgets them when it comes back (``forget_all``), and a generation that
finds its adapter missing reloads it once (engine/remote.py).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from engine.errors import EngineUnavailableError
from engine.protocol import LoraTarget

LOAD_PATH = "/v1/load_lora_adapter"
UNLOAD_PATH = "/v1/unload_lora_adapter"
# vLLM's answer when the name is loaded already (another gateway loaded it): as good as loaded.
_ALREADY_LOADED = "has already been loaded"

Post = Callable[[str, dict[str, Any]], Awaitable[httpx.Response]]


class AdapterLoadError(EngineUnavailableError):
    """The replica refused to load an adapter (its path or rank): the replica itself is fine,
    so the router tries another one instead of ejecting it. ``message`` is vLLM's reason."""

    def __init__(self, name: str, replica: str, message: str) -> None:
        super().__init__(f"replica {replica} could not load adapter {name!r}: {message}")
        self.reason = message


class ReplicaAdapters:
    """The adapters one replica holds for this gateway; ``post`` sends a keyed JSON POST to it."""

    def __init__(self, capacity: int, post: Post, replica: str) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self._capacity = capacity
        self._post = post
        self._replica = replica
        self._held: OrderedDict[str, int] = OrderedDict()  # name -> requests running on it
        self._loading: dict[str, asyncio.Lock] = {}

    def holds(self, name: str) -> bool:
        return name in self._held

    def names(self) -> tuple[str, ...]:
        """Least recently used first."""
        return tuple(self._held)

    def forget(self, name: str) -> None:
        """The replica no longer has it (it said so)."""
        self._held.pop(name, None)

    def forget_all(self) -> None:
        """The replica restarted: it holds nothing."""
        self._held.clear()

    async def acquire(self, target: LoraTarget) -> None:
        """Make sure the replica holds ``target`` and count one request on it (``release``)."""
        lock = self._loading.setdefault(target.name, asyncio.Lock())
        async with lock:
            if target.name not in self._held:
                await self._load(target)
                self._held[target.name] = 0
        self._held[target.name] = self._held.get(target.name, 0) + 1
        self._held.move_to_end(target.name)
        await self._evict()

    def release(self, name: str) -> None:
        if self._held.get(name, 0) > 0:
            self._held[name] -= 1

    async def _load(self, target: LoraTarget) -> None:
        try:
            answer = await self._post(LOAD_PATH, {"lora_name": target.name,
                                                  "lora_path": target.path})
        except httpx.HTTPError as exc:
            raise EngineUnavailableError(f"replica {self._replica}: {exc!r}") from exc
        if answer.status_code == 200 or _ALREADY_LOADED in answer.text:
            return
        if answer.status_code == 404 and _is_route_missing(answer):
            raise EngineUnavailableError(
                f"replica {self._replica} does not load adapters at runtime: start it with "
                "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True (llm-gateway engine serve does)")
        if answer.status_code == 401:
            raise EngineUnavailableError(f"replica {self._replica} refused the API key (401)")
        raise AdapterLoadError(target.name, self._replica, _reason(answer))

    async def _evict(self) -> None:
        """Unload idle adapters, least recently used first, while more than ``capacity``."""
        idle = [name for name, running in self._held.items() if running == 0]
        for name in idle[:max(0, len(self._held) - self._capacity)]:
            if self._held.get(name) != 0 or name in self._locked():
                continue
            del self._held[name]
            try:
                await self._post(UNLOAD_PATH, {"lora_name": name})
            except httpx.HTTPError as exc:
                raise EngineUnavailableError(f"replica {self._replica}: {exc!r}") from exc

    def _locked(self) -> set[str]:
        return {name for name, lock in self._loading.items() if lock.locked()}


def _is_route_missing(answer: httpx.Response) -> bool:
    """Starlette's own 404 (vLLM without runtime loading) or the replica gate's (a gate that
    predates adapters): no such route, as opposed to vLLM's 404 for an adapter's folder."""
    try:
        body = answer.json()
    except ValueError:
        return answer.text.strip() == "Not Found"
    error = body.get("error") if isinstance(body, dict) else None
    return body == {"detail": "Not Found"} or (
        isinstance(error, dict) and error.get("message") == "not found")


def _reason(answer: httpx.Response) -> str:
    try:
        error = answer.json().get("error")
    except ValueError:
        return f"HTTP {answer.status_code}"
    message = error.get("message") if isinstance(error, dict) else error
    return str(message)[:300] if message else f"HTTP {answer.status_code}"
