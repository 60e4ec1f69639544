"""A bounded, in-memory time series of the gateway's metrics for ``/dashboard``.

Every ``interval_s`` the sampler reads the app's Prometheus registry (the single
record of every count) and keeps a small ``Point`` of aggregates: totals, cost per
model and tenant, histogram buckets. At most ``max_points`` are kept.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

Buckets = tuple[tuple[float, float], ...]  # (upper bound, cumulative count), +Inf last


@dataclass(frozen=True)
class Point:
    t: float  # unix seconds
    requests: float = 0.0
    failed_runs: float = 0.0
    http_5xx: float = 0.0
    http_429: float = 0.0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    running: float = 0.0
    waiting: float = 0.0
    cost_by_model: dict[str, float] = field(default_factory=dict)
    cost_by_tenant: dict[str, float] = field(default_factory=dict)
    drafted_by_model: dict[str, float] = field(default_factory=dict)
    accepted_by_model: dict[str, float] = field(default_factory=dict)
    latency: Buckets = ()
    ttft: Buckets = ()


def _by(totals: dict[str, float], key: str, value: float) -> None:
    totals[key] = totals.get(key, 0.0) + value


def _buckets(metric: Metric) -> Buckets:
    """Cumulative bucket counts summed over every label set of a histogram."""
    per_bound: dict[float, float] = {}
    for sample in metric.samples:
        if sample.name.endswith("_bucket"):
            _by(per_bound, sample.labels["le"], sample.value)  # type: ignore[arg-type]
    return tuple(sorted(((float(le), count) for le, count in per_bound.items()),
                        key=lambda pair: pair[0]))


def _sum(metric: Metric, keep: Callable[[dict[str, str]], bool] = lambda _l: True) -> float:
    return sum(s.value for s in metric.samples
               if not s.name.endswith("_created") and keep(s.labels))


def _split(metric: Metric, label: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for sample in metric.samples:
        if not sample.name.endswith("_created"):
            _by(totals, sample.labels[label], sample.value)
    return totals


def read_point(registry: CollectorRegistry, now: float) -> Point:
    """Aggregate the registry's ``llmgw_*`` families into one ``Point``."""
    fam = {metric.name: metric for metric in registry.collect()}
    empty = Metric("empty", "", "untyped")

    def get(name: str) -> Metric:
        return fam.get(f"llmgw_{name}", empty)

    errors = get("http_errors")
    return Point(
        t=now,
        requests=_sum(get("requests")),
        failed_runs=_sum(get("requests"), lambda labels: labels.get("status") == "error"),
        http_5xx=_sum(errors, lambda labels: labels.get("code", "").startswith("5")),
        http_429=_sum(errors, lambda labels: labels.get("code") == "429"),
        prompt_tokens=_sum(get("prompt_tokens")),
        completion_tokens=_sum(get("completion_tokens")),
        running=_sum(get("engine_running")),
        waiting=_sum(get("engine_waiting")),
        cost_by_model=_split(get("cost"), "model"),
        cost_by_tenant=_split(get("cost"), "tenant"),
        drafted_by_model=_split(get("spec_draft_tokens"), "model"),
        accepted_by_model=_split(get("spec_accepted_tokens"), "model"),
        latency=_buckets(get("request_latency_seconds")),
        ttft=_buckets(get("time_to_first_token_seconds")),
    )


def quantile(q: float, now: Buckets, before: Buckets) -> float | None:
    """Like PromQL's ``histogram_quantile`` over the increase from ``before`` to ``now``."""
    old = dict(before)
    increase = [(le, count - old.get(le, 0.0)) for le, count in now]
    total = increase[-1][1] if increase else 0.0
    if total <= 0:
        return None
    rank, lower, below = q * total, 0.0, 0.0
    for le, cumulative in increase:
        if cumulative >= rank:
            if math.isinf(le):
                return lower  # beyond the last finite bound: report that bound
            inside = cumulative - below
            return lower + (le - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = le, cumulative
    return lower


class History:
    """The last ``max_points`` samples, taken every ``interval_s`` seconds."""

    def __init__(self, registry: CollectorRegistry, interval_s: float, max_points: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._registry = registry
        self.interval_s = interval_s
        self._points: deque[Point] = deque(maxlen=max_points)
        self._clock = clock

    def sample(self) -> Point:
        point = read_point(self._registry, self._clock())
        self._points.append(point)
        return point

    def sample_if_due(self) -> None:
        """Sample now unless the last sample is fresher than the interval."""
        if not self._points or self._clock() - self._points[-1].t >= self.interval_s:
            self.sample()

    def points(self) -> list[Point]:
        return list(self._points)

    @asynccontextmanager
    async def sampling(self) -> AsyncIterator[None]:
        """Sample in the background while the context is open (the app's lifespan)."""
        task = asyncio.create_task(self._loop())
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.interval_s)

