"""Turns sampled ``Point``s into the dashboard's plot series (the history API's JSON).

Rates and percentiles at each point use the increase over the trailing ``window_s``
(like ``rate(x[window])`` and ``histogram_quantile`` in the Grafana dashboard);
cost is cumulative since the gateway started.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gateway.observability.history import Point, quantile

Series = list[float | None]


def _base(points: Sequence[Point], i: int, window_s: float) -> int | None:
    """Index of the newest point at least ``window_s`` older than point ``i`` (or the first)."""
    j = i
    while j > 0 and points[i].t - points[j].t < window_s:
        j -= 1
    return None if j == i else j


def _rate(points: Sequence[Point], bases: list[int | None],
          value: Callable[[Point], float]) -> Series:
    out: Series = []
    for i, j in enumerate(bases):
        if j is None:
            out.append(None)
            continue
        elapsed = points[i].t - points[j].t
        out.append(round(max(0.0, value(points[i]) - value(points[j])) / elapsed, 6))
    return out


def _quantiles(points: Sequence[Point], bases: list[int | None], q: float,
               pick: Callable[[Point], Any]) -> Series:
    out: Series = []
    for i, j in enumerate(bases):
        value = None if j is None else quantile(q, pick(points[i]), pick(points[j]))
        out.append(None if value is None else round(value, 4))
    return out


def _acceptance(points: Sequence[Point], bases: list[int | None], model: str) -> Series:
    out: Series = []
    for i, j in enumerate(bases):
        if j is None:
            out.append(None)
            continue
        now, before = points[i], points[j]
        drafted = now.drafted_by_model.get(model, 0.0) - before.drafted_by_model.get(model, 0.0)
        accepted = (now.accepted_by_model.get(model, 0.0)
                    - before.accepted_by_model.get(model, 0.0))
        out.append(round(accepted / drafted, 4) if drafted > 0 else None)
    return out


def _cumulative(points: Sequence[Point], pick: Callable[[Point], dict[str, float]]) -> dict[
        str, Series]:
    names = sorted({name for p in points for name in pick(p)})
    return {name: [round(pick(p).get(name, 0.0), 8) for p in points] for name in names}


def _panel(title: str, unit: str, series: dict[str, Series]) -> dict[str, Any]:
    return {"title": title, "unit": unit, "series": series}


def build_panels(points: Sequence[Point], window_s: float) -> dict[str, Any]:
    """The dashboard's JSON: one time axis and a dict of plot panels."""
    bases = [_base(points, i, window_s) for i in range(len(points))]
    latency = {f"p{int(q * 100)}": _quantiles(points, bases, q, lambda p: p.latency)
               for q in (0.5, 0.95, 0.99)}
    models = sorted({m for p in points for m in p.drafted_by_model})
    panels = {
        "requests": _panel("Requests per second", "req/s", {
            "requests/s": _rate(points, bases, lambda p: p.requests)}),
        "latency": _panel("End-to-end latency", "s", latency),
        "ttft": _panel("Time to first token", "s", {
            f"p{int(q * 100)}": _quantiles(points, bases, q, lambda p: p.ttft)
            for q in (0.5, 0.95, 0.99)}),
        "tokens": _panel("Tokens per second", "tok/s", {
            "prompt": _rate(points, bases, lambda p: p.prompt_tokens),
            "completion": _rate(points, bases, lambda p: p.completion_tokens)}),
        "errors": _panel("Errors and 429s per second", "1/s", {
            "5xx": _rate(points, bases, lambda p: p.http_5xx),
            "429": _rate(points, bases, lambda p: p.http_429),
            "failed runs": _rate(points, bases, lambda p: p.failed_runs)}),
        "cost_model": _panel("Cost per model (cumulative)", "cost",
                             _cumulative(points, lambda p: p.cost_by_model)),
        "cost_tenant": _panel("Cost per tenant (cumulative)", "cost",
                              _cumulative(points, lambda p: p.cost_by_tenant)),
        "acceptance": _panel("Speculation acceptance", "ratio",
                             {m: _acceptance(points, bases, m) for m in models}),
        "engine": _panel("Engine queue", "requests", {
            "running": [p.running for p in points], "waiting": [p.waiting for p in points]}),
    }
    return {"window_s": window_s, "t": [round(p.t, 3) for p in points], "panels": panels}
