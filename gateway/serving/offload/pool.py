"""``PlanningPool``: where each request is planned, and the limits on doing it.

Light requests (``planning/job.py``: no schema or tools, at most ``inline_max_chars``)
are planned on the event loop at once: under a millisecond, cheaper than a hand-over. The
rest wait for a fair slot (``slots.py``) and run in the runner the settings name; their
time limit is the runner's (CPU seconds in a worker process, wall seconds in a thread).
The pipeline calls ``plan`` after authentication and the limiter's admission check, so
a key over its limits is refused before any of this.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from typing import Any, Protocol

from gateway.serving.offload.outcome import Outcome, too_costly
from gateway.serving.offload.processes import ProcessRunner
from gateway.serving.offload.slots import FairSlots, Lease
from gateway.serving.offload.threads import Submitted, ThreadRunner
from gateway.serving.planning.job import PlanJob, Planned, weight
from gateway.settings import PlanningSettings


class Runner(Protocol):
    clock: str  # what its time limit counts: "CPU" or "wall" seconds

    async def start(self) -> None: ...

    def submit(self, job: PlanJob) -> Submitted: ...

    async def close(self) -> None: ...


def _release_when_done(future: asyncio.Future[Outcome], lease: Lease) -> None:
    """The slot is held until the work has really stopped, not until the caller stops
    waiting (a thread past its time limit runs on, and keeps its tenant's share busy)."""

    def done(finished: asyncio.Future[Outcome]) -> None:
        lease.release()
        if not finished.cancelled():
            finished.exception()  # retrieved: nobody may be waiting any more

    future.add_done_callback(done)


class PlanningPool:
    def __init__(self, renderers: Mapping[str, Any], settings: PlanningSettings) -> None:
        self._renderers = dict(renderers)
        self.settings = settings
        self.slots = FairSlots(settings.workers, settings.per_tenant,
                               settings.max_waiting_per_tenant)
        self.runner: Runner = (
            ProcessRunner(self._renderers, settings) if settings.executor == "process"
            else ThreadRunner(self._renderers, settings.workers, settings.timeout_s))
        self.counts: Counter[str] = Counter()  # jobs planned "inline" and "pooled"

    async def start(self) -> None:
        await self.runner.start()

    async def close(self) -> None:
        await self.runner.close()

    def is_light(self, job: PlanJob) -> bool:
        cost = weight(job.body)
        return cost is not None and cost <= self.settings.inline_max_chars

    async def plan(self, job: PlanJob, tenant: str) -> Planned:
        if self.is_light(job):
            self.counts["inline"] += 1
            return job.run(self._renderers)
        lease = await self.slots.acquire(tenant, self.settings.wait_timeout_s)
        try:
            submitted = self.runner.submit(job)
        except BaseException:
            lease.release()
            raise
        self.counts["pooled"] += 1
        _release_when_done(submitted.future, lease)
        try:
            outcome = await asyncio.wait_for(asyncio.shield(submitted.future),
                                             submitted.wait_s)
        except TimeoutError:
            param = submitted.progress.param if submitted.progress is not None else None
            raise too_costly(param, self.settings.timeout_s, self.runner.clock) from None
        return outcome.unwrap()
