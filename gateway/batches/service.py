"""The Batch API's parts, wired once: file and batch stores, creating a batch from its
input file, and the worker's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.auth.key_store import KeyStore
from gateway.batches.executor import AnsweredBefore
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
    max_line_bytes: int  # an input line's limit: the request body's (limits.max_body_bytes)
    max_json_depth: int  # a line's body nesting bound: the request body's (limits)
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    async def create(self, spec: NewBatch) -> BatchView:
        """The batch of ``spec.input_file_id``'s lines: the file is read chunk by chunk,
        each chunk parsed in a thread (off the event loop), its lines stored as they come;
        a file with any mistake (a line longer than a request body may be, among them)
        gives a ``failed`` batch naming them."""
        parser = InputParser(spec.endpoint, self.settings.max_requests, self.max_line_bytes,
                             self.max_json_depth)

        async def groups() -> AsyncIterator[list[InputLine]]:
            async for chunk in self.files.chunks(spec.input_file_id):
                yield await asyncio.to_thread(parser.feed, chunk)
            yield parser.finish()
            if parser.failed:
                raise InputRejected(parser.errors)

        return await self.store.create(spec, groups())

    @contextlib.asynccontextmanager
    async def running(self, pipeline: Pipeline, billed: AnsweredBefore,
                      drain_timeout_s: float) -> AsyncIterator[None]:
        """Run the worker for as long as the app serves."""
        engine = self.store.engine
        leases = Leases(engine, self.owner, self.settings.lease_s,
                        max_attempts=self.settings.max_attempts)
        parts = WorkerParts(self.store, leases, Finalizer(engine, self.owner), self.files,
                            self.keys)
        worker = BatchWorker(pipeline, billed, parts, self.settings, drain_timeout_s)
        self._task = asyncio.create_task(worker.run(), name="batch-worker")
        try:
            yield
        finally:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
