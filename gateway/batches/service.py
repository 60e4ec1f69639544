"""The Batch API's parts, wired once: file and batch stores, creating a batch from its
input file, and the worker's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.auth.key_store import KeyStore
from gateway.batches.executor import BilledBefore
from gateway.batches.files import FileStore
from gateway.batches.jsonl import InputLine, InputParser
from gateway.batches.leases import Leases
from gateway.batches.output import Finalizer
from gateway.batches.store import BatchStore, BatchView, InputRejected, NewBatch
from gateway.batches.worker import BatchWorker, WorkerParts
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

    async def create(self, spec: NewBatch) -> BatchView:
        """The batch of ``spec.input_file_id``'s lines: the file is read chunk by chunk,
        each chunk parsed in a thread (off the event loop), its lines stored as they come;
        a file with any mistake gives a ``failed`` batch naming them."""
        parser = InputParser(spec.endpoint, self.settings.max_requests)

        async def groups() -> AsyncIterator[list[InputLine]]:
            async for chunk in self.files.chunks(spec.input_file_id):
                yield await asyncio.to_thread(parser.feed, chunk)
            yield parser.finish()
            if parser.failed:
                raise InputRejected(parser.errors)

        return await self.store.create(spec, groups())

    @contextlib.asynccontextmanager
    async def running(self, pipeline: Pipeline, billed: BilledBefore,
                      drain_timeout_s: float) -> AsyncIterator[None]:
        """Run the worker for as long as the app serves."""
        engine = self.store.engine
        parts = WorkerParts(self.store, Leases(engine, self.owner, self.settings.lease_s),
                            Finalizer(engine, self.owner), self.files, self.keys)
        worker = BatchWorker(pipeline, billed, parts, self.settings, drain_timeout_s)
        self._task = asyncio.create_task(worker.run(), name="batch-worker")
        try:
            yield
        finally:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
