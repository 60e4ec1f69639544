"""Liveness: what a process restart cures (engine/liveness.py, the embedded engine's vitals)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.embedded import EmbeddedEngine
from engine.liveness import LivenessPolicy, ProgressWatch, Vitals, problem
from engine.supervisor import supervise

POLICY = LivenessPolicy(max_down_s=60, max_stall_s=30)


@dataclass
class Reporting:
    vitals_now: Vitals
    model_name: str = "m"

    def vitals(self, now: float) -> Vitals:
        return self.vitals_now


def test_progress_watch_when_busy_without_steps_then_counts_from_the_first_busy_look() -> None:
    watch = ProgressWatch()
    assert watch.observe(0.0, busy=False, steps=5) == 0.0
    assert watch.observe(10.0, busy=True, steps=5) == 0.0
    assert watch.observe(40.0, busy=True, steps=5) == 30.0


def test_progress_watch_when_steps_advance_or_engine_idles_then_resets() -> None:
    watch = ProgressWatch()
    watch.observe(0.0, busy=True, steps=1)
    assert watch.observe(50.0, busy=True, steps=2) == 0.0
    assert watch.observe(60.0, busy=False, steps=2) == 0.0
    assert watch.observe(70.0, busy=True, steps=2) == 0.0


@pytest.mark.parametrize("vitals,expected", [
    (Vitals(), None),
    (Vitals(down_s=59), None),  # an in-process restart still within its bound
    (Vitals(down_s=61), "down for 61 s"),
    (Vitals(down_s=1, restart_failed=True), "restarting it failed"),
    (Vitals(stalled_s=31), "finished no step for 31 s"),
])
def test_problem_names_what_a_restart_would_cure(vitals: Vitals, expected: str | None) -> None:
    found = problem(Reporting(vitals), POLICY, 0.0)
    assert (found is None) if expected is None else (expected in (found or ""))


def test_problem_when_engine_reports_no_vitals_then_alive() -> None:
    assert problem(object(), POLICY, 0.0) is None


async def test_embedded_engine_when_restart_fails_then_dead_and_supervisor_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = EmbeddedEngine(EngineConfig("m", tmp_path))
    attempts: list[int] = []

    def broken_build() -> None:
        attempts.append(1)
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(engine, "_build", broken_build)
    with pytest.raises(RuntimeError):
        await engine.restart()
    assert engine.is_dead()  # before the fix a failed restart looked alive and was never retried
    assert engine.vitals(1e9).restart_failed
    assert problem(engine, POLICY, 1e9) is not None
    task = asyncio.create_task(supervise(engine, check_every_s=0.01, max_backoff_s=0.02))
    await asyncio.sleep(0.2)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(attempts) > 2


def test_embedded_engine_while_first_loading_then_alive(tmp_path: Path) -> None:
    engine = EmbeddedEngine(EngineConfig("m", tmp_path))
    assert engine.vitals(0.0) == Vitals() and not engine.is_dead()
