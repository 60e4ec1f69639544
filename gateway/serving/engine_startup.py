"""Starting a gateway's engines: the first model's before the gateway answers, the others
one after the other behind it, so the chat model serves while the embedder still loads.

A model whose engine is still loading answers 503 with ``Retry-After`` (``/ready`` is 200
once any model can serve, ``/ready/{model}`` per model). A background load that fails is
reported to ``on_failure`` (the app stops the process, as a failed start did before: a pod
restarts, a person sees why); shutting down waits for a load under way to finish, since a
half-built engine cannot be interrupted, then stops every engine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway.serving.registry import ModelRegistry, ServedModel

log = logging.getLogger("llm_gateway.engines")
OnFailure = Callable[[str, BaseException], None]


class EngineStartup:
    def __init__(self, models: ModelRegistry, first: str | None, on_failure: OnFailure) -> None:
        self._models = models
        ordered = list(models)
        head = next((m for m in ordered if m.name == first), ordered[0] if ordered else None)
        self._first = head
        self._others = [m for m in ordered if m is not head]
        self._on_failure = on_failure
        self._background: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """The first model's engine; the others' loads continue in the background."""
        count = len(self._others) + (self._first is not None)
        if self._first is not None:
            await _load(self._first, 1, count)
        if self._others:
            self._background = asyncio.create_task(self._load_others(count))

    async def _load_others(self, count: int) -> None:
        for i, model in enumerate(self._others, start=2):
            try:
                await _load(model, i, count)
            except Exception as exc:
                log.exception("%s failed to load", model.name)
                self._on_failure(model.name, exc)
                return

    async def loaded(self) -> None:
        """Wait until the background loads have ended (loaded or failed)."""
        if self._background is not None:
            await asyncio.wait({self._background})

    async def stop(self) -> None:
        await asyncio.shield(self.loaded())
        await self._models.stop()


async def _load(model: ServedModel, i: int, count: int) -> None:
    started = time.monotonic()
    log.info("loading %s (%d of %d)...", model.name, i, count)
    await model.engine.start()
    log.info("%s ready after %.0f s", model.name, time.monotonic() - started)
