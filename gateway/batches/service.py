"""The Batch API's parts, wired once: file and batch stores, and the worker's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.auth.key_store import KeyStore
from gateway.batches.executor import BilledBefore
from gateway.batches.files import FileStore
from gateway.batches.store import BatchStore
from gateway.batches.worker import BatchWorker
from gateway.serving.pipeline import Pipeline
from gateway.settings import BatchSettings


@dataclass
class Batches:
    files: FileStore
    store: BatchStore
    keys: KeyStore
    settings: BatchSettings
    owner: str  # this instance (metering.instance_id): who claims lines
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    @contextlib.asynccontextmanager
    async def running(self, pipeline: Pipeline, billed: BilledBefore,
                      drain_timeout_s: float) -> AsyncIterator[None]:
        """Run the worker for as long as the app serves."""
        worker = BatchWorker(pipeline, billed, self.store, self.files, self.keys,
                             self.settings, self.owner, drain_timeout_s)
        self._task = asyncio.create_task(worker.run(), name="batch-worker")
        try:
            yield
        finally:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
