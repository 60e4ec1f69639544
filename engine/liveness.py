"""Liveness of an in-process vLLM engine: dead and not coming back, or stuck.

Kubernetes restarts a container whose liveness probe fails, while readiness only takes it out of
rotation. So liveness fails only for what a restart cures: an engine that died and whose
in-process restart (``engine/supervisor.py``) failed or overran its bound, or one that holds
requests but has finished no step for a while (a hung engine core, GPU or collective).
Loading is the startup probe's business: a model that is still loading is alive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class LivenessPolicy:
    max_down_s: float = 1800.0  # an in-process restart may take this long (a model load)
    max_stall_s: float = 300.0  # busy with no finished engine step for this long: stuck

    def __post_init__(self) -> None:
        if self.max_down_s <= 0 or self.max_stall_s <= 0:
            raise ValueError("max_down_s and max_stall_s must be > 0")


@dataclass(frozen=True)
class Vitals:
    """What an engine says about itself at one moment."""

    down_s: float = 0.0  # how long it has been dead or restarting (0: up, or first loading)
    restart_failed: bool = False  # the last in-process restart raised
    stalled_s: float = 0.0  # how long it has held requests without finishing a step


@runtime_checkable
class Watched(Protocol):
    """An engine that reports its vitals (the embedded vLLM engine does)."""

    @property
    def model_name(self) -> str: ...

    def vitals(self, now: float) -> Vitals: ...


def problem(engine: object, policy: LivenessPolicy, now: float) -> str | None:
    """Why ``engine`` needs its process restarted, or None (also for engines without vitals)."""
    if not isinstance(engine, Watched):
        return None
    vitals, name = engine.vitals(now), engine.model_name
    if vitals.restart_failed:
        return f"engine for {name} died and restarting it failed"
    if vitals.down_s > policy.max_down_s:
        return f"engine for {name} has been down for {vitals.down_s:.0f} s"
    if vitals.stalled_s > policy.max_stall_s:
        return f"engine for {name} holds requests but finished no step for {vitals.stalled_s:.0f} s"
    return None


class ProgressWatch:
    """Seconds an engine has been busy without finishing a step (0 when idle or moving).

    ``observe`` is called at each liveness check with whether requests are unfinished and the
    engine's running count of finished steps.
    """

    def __init__(self) -> None:
        self._steps = -1
        self._busy = False
        self._since = 0.0

    def observe(self, now: float, busy: bool, steps: int) -> float:
        if not busy or not self._busy or steps != self._steps:
            self._steps, self._busy, self._since = steps, busy, now
            return 0.0
        return now - self._since
