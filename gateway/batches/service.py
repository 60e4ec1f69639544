"""The Batch API's parts, wired once: file and batch stores, and the worker's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.auth.key_store import KeyStore
from gateway.batches.files import FileStore
from gateway.batches.store import BatchStore
from gateway.settings import BatchSettings

if TYPE_CHECKING:
    from gateway.http.state import GatewayState


@dataclass
class Batches:
    files: FileStore
    store: BatchStore
    keys: KeyStore
    settings: BatchSettings
    owner: str  # this instance (metering.instance_id): who claims lines
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    @contextlib.asynccontextmanager
    async def running(self, state: GatewayState) -> AsyncIterator[None]:
        """Run the worker for as long as the app serves."""
        from gateway.batches.worker import BatchWorker

        worker = BatchWorker(state, self.store, self.files, self.keys, self.settings, self.owner)
        self._task = asyncio.create_task(worker.run(), name="batch-worker")
        try:
            yield
        finally:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
