"""The dashboard's history: sampling the registry, bounded size, quantiles and panels."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.metering.metrics import MeteringMetrics
from gateway.observability.history import History, quantile, read_point
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.panels import build_panels


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_quantile_when_observations_fall_in_one_bucket_then_interpolates_inside_it() -> None:
    before = ((1.0, 0.0), (2.0, 0.0), (float("inf"), 0.0))
    now = ((1.0, 0.0), (2.0, 10.0), (float("inf"), 10.0))
    assert quantile(0.5, now, before) == pytest.approx(1.5)
    assert quantile(0.99, now, before) == pytest.approx(1.99)


def test_quantile_when_nothing_new_or_beyond_last_bound_then_none_or_last_bound() -> None:
    same = ((1.0, 3.0), (float("inf"), 3.0))
    assert quantile(0.5, same, same) is None
    over = ((1.0, 0.0), (float("inf"), 4.0))
    assert quantile(0.5, over, ()) == 1.0


def test_history_when_sampled_more_than_its_size_then_keeps_the_newest() -> None:
    clock = Clock()
    history = History(GatewayMetrics().registry, interval_s=2.0, max_points=3, clock=clock)
    for _ in range(5):
        history.sample()
        clock.now += 2.0
    assert [p.t for p in history.points()] == [1_004.0, 1_006.0, 1_008.0]


def test_history_when_asked_before_the_interval_then_does_not_sample_again() -> None:
    clock = Clock()
    history = History(GatewayMetrics().registry, interval_s=2.0, max_points=10, clock=clock)
    history.sample_if_due()
    clock.now += 1.0
    history.sample_if_due()
    assert len(history.points()) == 1
    clock.now += 1.0
    history.sample_if_due()
    assert len(history.points()) == 2


def test_panels_when_requests_arrive_then_rates_percentiles_cost_and_acceptance_follow() -> None:
    metrics = GatewayMetrics()
    clock = Clock()
    history = History(metrics.registry, interval_s=10.0, max_points=10, clock=clock)
    history.sample()
    for latency in (0.2, 0.4, 0.6, 0.8):
        metrics.requests.labels("m", "acme", "ok").inc()
        metrics.latency.labels("m").observe(latency)
        metrics.completion_tokens.labels("m", "acme").inc(25)
    MeteringMetrics(metrics.registry).settled("m", "acme", 10, 0, 25, Decimal("0.5"))
    metrics.spec_drafted.labels("m").inc(8)
    metrics.spec_accepted.labels("m").inc(6)
    metrics.http_errors.labels("429", "rate_limit_error").inc(2)
    clock.now += 10.0
    history.sample()

    body = build_panels(history.points(), window_s=10.0)
    panels = body["panels"]
    assert body["t"] == [1_000.0, 1_010.0]
    assert panels["requests"]["series"]["requests/s"] == [None, 0.4]
    assert panels["tokens"]["series"]["completion"] == [None, 10.0]
    assert panels["errors"]["series"]["429"] == [None, 0.2]
    assert panels["cost_model"]["series"] == {"m": [0.0, 0.5]}
    assert panels["cost_tenant"]["series"] == {"acme": [0.0, 0.5]}
    assert panels["acceptance"]["series"] == {"m": [None, 0.75]}
    p50 = panels["latency"]["series"]["p50"][1]
    assert 0.25 <= p50 <= 0.75


def test_read_point_when_nothing_recorded_yet_then_zeros_and_no_buckets() -> None:
    point = read_point(GatewayMetrics().registry, 5.0)
    assert (point.t, point.requests, point.http_429) == (5.0, 0.0, 0.0)
    assert (point.cost_by_model, point.latency) == ({}, ())
