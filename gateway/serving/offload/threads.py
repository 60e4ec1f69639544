"""Planning in threads of the gateway's own process.

Nothing to start and nothing to copy, but pure-Python planning (jsonschema, Jinja) holds
the GIL that the event loop needs (the loop waits up to the 5 ms switch interval each time
it wakes), and a thread cannot be stopped: a job past its time limit is answered at once
with a 400 and keeps its slot until it ends. The process runner measures better here
(docs/reliability.md); threads suit tests and a gateway without spare memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gateway.serving.offload.outcome import Outcome
from gateway.serving.planning.job import PlanJob
from gateway.serving.planning.progress import Progress


@dataclass(frozen=True)
class Submitted:
    """A job on its way: ``future`` ends when the work has stopped; the caller waits for
    it at most ``wait_s`` (None: the runner bounds it itself) and then names the field
    ``progress`` last saw."""

    future: asyncio.Future[Outcome]
    wait_s: float | None = None
    progress: Progress | None = None


def outcome_of(job: PlanJob, renderers: Mapping[str, Any], progress: Progress) -> Outcome:
    try:
        return Outcome(plan=job.run(renderers, progress.mark))
    except Exception as exc:  # raised again on the event loop, where it is answered
        return Outcome(error=exc)


class ThreadRunner:
    clock = "wall"

    def __init__(self, renderers: Mapping[str, Any], workers: int, timeout_s: float) -> None:
        self._renderers = renderers
        self._timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="llmgw-planning")

    async def start(self) -> None:
        return None

    def submit(self, job: PlanJob) -> Submitted:
        progress = Progress()
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, outcome_of, job, self._renderers, progress)
        return Submitted(future, self._timeout_s, progress)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
