"""The planning worker process: its own copy of every renderer, one job at a time.

Runs in a process started with ``spawn`` (``processes.py``). It lowers its CPU priority, so
a tenant's expensive planning yields the CPU to the engine and the event loop, and bounds
each job by CPU time with ``ITIMER_PROF``: the timer's signal stops pure-Python work
(jsonschema, Jinja) where it is, and the job is answered as too costly, naming the field
it was working on; the worker goes on with the next job. Only the gateway talks to it,
over a pipe: ``(job, cpu_limit_s)`` in, an ``Outcome`` out; ``None`` asks it to exit.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any

from gateway.serving.offload.outcome import Outcome, failed, too_costly
from gateway.serving.planning.job import PlanJob
from gateway.serving.planning.progress import Progress

READY = "ready"


class OverBudget(BaseException):
    """The job's CPU time is spent. A BaseException: planning code that catches
    ``Exception`` (a template's errors become a 400) must not swallow it."""


class _Budget:
    """Raises ``OverBudget`` from the timer's signal while a job runs, never between jobs."""

    def __init__(self) -> None:
        self.armed = False

    def alarm(self, signum: int, frame: FrameType | None) -> None:
        del signum, frame
        if self.armed:
            raise OverBudget


def _outcome(job: PlanJob, renderers: Mapping[str, Any], cpu_limit_s: float,
             budget: _Budget) -> Outcome:
    progress = Progress()
    try:
        budget.armed = True
        signal.setitimer(signal.ITIMER_PROF, cpu_limit_s)
        try:
            return Outcome(plan=job.run(renderers, progress.mark))
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            budget.armed = False
    except OverBudget:
        return Outcome(error=too_costly(progress.param, cpu_limit_s, "CPU"))
    except Exception as exc:
        return failed(exc)


def serve(conn: Connection, renderers: Mapping[str, Any], niceness: int) -> None:
    """The worker's main loop (the ``target`` of its process)."""
    os.nice(niceness)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per job, no tokenizer threads
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the gateway's; it stops us
    budget = _Budget()
    signal.signal(signal.SIGPROF, budget.alarm)
    conn.send(READY)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the gateway is gone
            return
        if message is None:
            return
        job, cpu_limit_s = message
        try:
            outcome = _outcome(job, renderers, cpu_limit_s, budget)
        except OverBudget:  # the signal landed as the job ended: still over its time
            outcome = Outcome(error=too_costly(None, cpu_limit_s, "CPU"))
        conn.send(outcome)
