"""Planning in worker processes (``worker.py``): out of the GIL's reach, at a lower CPU
priority, each job bounded by CPU time inside its worker.

Each worker is used by one job at a time, from a thread of this process that sends the
job and blocks on the pipe (the event loop never does). A worker that does not answer
within ``backstop_s`` (stuck where no signal reaches, in native code) or dies is killed
and started again by the next job it gets. Workers start in the background when the
gateway starts (a start loads every renderer: seconds), or for their first job.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from gateway.serving.offload.outcome import Outcome, too_costly, worker_failed
from gateway.serving.offload.threads import Submitted
from gateway.serving.offload.worker import READY, serve
from gateway.serving.planning.job import PlanJob
from gateway.settings import PlanningSettings

log = logging.getLogger("llm_gateway.planning")
START_TIMEOUT_S = 300.0  # importing the tokenizers' library on a busy 2-core machine
BACKSTOP_FACTOR = 10  # wall seconds a job may take per CPU second (a busy CPU, low priority)
_SPAWN = multiprocessing.get_context("spawn")  # never fork a process with engine threads


class WorkerProcess:
    """One worker process; every method blocks and is called from a planning thread."""

    def __init__(self, renderers: Mapping[str, Any], niceness: int) -> None:
        self._renderers = dict(renderers)
        self._niceness = niceness
        self._lock = threading.Lock()
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        with self._lock:
            try:
                self._ensure()
            except Exception:  # its first job tries again, and answers a 503 if it fails
                log.exception("a planning worker did not start")

    def _ensure(self) -> Connection:
        if self._process is not None and self._process.is_alive() and self._conn is not None:
            return self._conn
        self._kill()
        conn, child = _SPAWN.Pipe()
        process = _SPAWN.Process(target=serve, args=(child, self._renderers, self._niceness),
                                 name="llmgw-planning", daemon=True)
        process.start()
        child.close()
        self._process, self._conn = process, conn
        if not conn.poll(START_TIMEOUT_S) or conn.recv() != READY:
            self._kill()
            raise RuntimeError("a planning worker did not start")
        return conn

    def run(self, job: PlanJob, cpu_limit_s: float, backstop_s: float) -> Outcome:
        with self._lock:
            try:
                conn = self._ensure()
                conn.send((job, cpu_limit_s))
                if conn.poll(backstop_s):
                    outcome = conn.recv()
                    assert isinstance(outcome, Outcome)
                    return outcome
                log.warning("a planning worker ran past %.0f s; killed", backstop_s)
                error: Exception = too_costly(None, backstop_s, "wall")
            except Exception:
                log.exception("a planning worker failed")
                error = worker_failed()
            self._kill()
            return Outcome(error=error)

    def stop(self, timeout_s: float = 2.0) -> None:
        if not self._lock.acquire(timeout=timeout_s):  # a job still runs: end it
            process = self._process
            if process is not None and process.is_alive():
                process.kill()  # the job's thread reads EOF and cleans up
            return
        try:
            if self._conn is not None and self._process is not None:
                try:
                    self._conn.send(None)
                    self._process.join(timeout_s)
                except (OSError, ValueError):
                    pass
            self._kill()
        finally:
            self._lock.release()

    def _kill(self) -> None:
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(5)
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None


class ProcessRunner:
    clock = "CPU"

    def __init__(self, renderers: Mapping[str, Any], settings: PlanningSettings) -> None:
        self._cpu_limit_s = settings.timeout_s
        self._backstop_s = settings.timeout_s * BACKSTOP_FACTOR
        self.workers = [WorkerProcess(renderers, settings.niceness)
                        for _ in range(settings.workers)]
        self._idle = list(self.workers)
        self._threads = ThreadPoolExecutor(settings.workers,
                                           thread_name_prefix="llmgw-planning")
        self.starting: asyncio.Future[list[None]] | None = None

    async def start(self) -> None:
        """Start the workers in the background (a job waits for its own worker's start)."""
        loop = asyncio.get_running_loop()
        self.starting = asyncio.gather(*[loop.run_in_executor(self._threads, w.start)
                                         for w in self.workers])

    def submit(self, job: PlanJob) -> Submitted:
        """Run ``job`` on an idle worker: the caller holds a slot, and there are as many
        slots as workers."""
        worker = self._idle.pop()
        future = asyncio.get_running_loop().run_in_executor(
            self._threads, worker.run, job, self._cpu_limit_s, self._backstop_s)
        future.add_done_callback(lambda _: self._idle.append(worker))
        return Submitted(future)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*[loop.run_in_executor(None, w.stop) for w in self.workers])
        self._threads.shutdown(wait=False, cancel_futures=True)
