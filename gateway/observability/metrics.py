"""The gateway's Prometheus metrics (``llmgw_*``), one ``CollectorRegistry`` per app.

Labels stay bounded: ``model`` (the served models), ``tenant`` (capped by
``TenantLabels``), ``status`` (a request outcome or an HTTP code) and error types.
Never a request id. Engine gauges are read from ``Engine.stats()`` at scrape time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from threading import Lock

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from engine.protocol import QUEUE_TIME_BUCKETS_S, EngineStats
from gateway.serving.registry import ServedModel

PREFIX = "llmgw"
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0,
                     20.0, 30.0, 60.0, 120.0, 300.0)
TTFT_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
                  20.0, 60.0)
ITL_BUCKETS_S = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0)
OTHER_TENANTS = "other"


@dataclass
class TenantLabels:
    """Keeps the ``tenant`` label bounded: the first ``limit`` tenants, then ``other``."""

    limit: int
    _seen: set[str] = field(default_factory=set)
    _lock: Lock = field(default_factory=Lock)

    def __call__(self, tenant: str) -> str:
        with self._lock:
            if tenant in self._seen:
                return tenant
            if len(self._seen) < self.limit:
                self._seen.add(tenant)
                return tenant
        return OTHER_TENANTS


class GatewayMetrics:
    """Every metric the gateway records itself, registered in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(f"{PREFIX}_requests", "Requests that reached an engine, by outcome",
                                ["model", "tenant", "status"], registry=r)
        self.http_errors = Counter(f"{PREFIX}_http_errors", "Error responses, by HTTP code",
                                   ["code", "type"], registry=r)
        self.limit_rejections = Counter(f"{PREFIX}_limit_rejections",
                                        "Requests refused with a 429 (rate limit or budget)",
                                        ["tenant", "reason"], registry=r)
        self.ttft = Histogram(f"{PREFIX}_time_to_first_token_seconds",
                              "Time from dispatch to the first generated token",
                              ["model"], buckets=TTFT_BUCKETS_S, registry=r)
        self.itl = Histogram(f"{PREFIX}_inter_token_latency_seconds",
                             "Time per output token between consecutive engine steps",
                             ["model"], buckets=ITL_BUCKETS_S, registry=r)
        self.latency = Histogram(f"{PREFIX}_request_latency_seconds",
                                 "End-to-end time from dispatch to settlement",
                                 ["model"], buckets=LATENCY_BUCKETS_S, registry=r)
        self.prompt_tokens = Counter(f"{PREFIX}_prompt_tokens", "Prompt tokens (engine ids)",
                                     ["model", "tenant"], registry=r)
        self.completion_tokens = Counter(f"{PREFIX}_completion_tokens",
                                         "Generated tokens (engine ids)",
                                         ["model", "tenant"], registry=r)
        self.cached_tokens = Counter(f"{PREFIX}_cached_prompt_tokens",
                                     "Prompt tokens served from the prefix cache",
                                     ["model", "tenant"], registry=r)
        self.cache_hits = Counter(f"{PREFIX}_prefix_cache_hits",
                                  "Requests with at least one prompt token from the prefix cache",
                                  ["model"], registry=r)
        self.spec_drafted = Counter(f"{PREFIX}_spec_draft_tokens",
                                    "Speculative tokens proposed for settled requests",
                                    ["model"], registry=r)
        self.spec_accepted = Counter(f"{PREFIX}_spec_accepted_tokens",
                                     "Speculative tokens accepted for settled requests",
                                     ["model"], registry=r)

    def watch_engines(self, models: Iterable[ServedModel]) -> None:
        self.registry.register(EngineCollector(models))


class EngineCollector(Collector):
    """Each engine's own counters, read from ``Engine.stats()`` when Prometheus scrapes."""

    def __init__(self, models: Iterable[ServedModel]) -> None:
        self._models = models

    def describe(self) -> list[Metric]:
        return []  # an unchecked collector: read at scrape time only

    def collect(self) -> Iterator[Metric]:
        families = _engine_families()
        queue = HistogramMetricFamily(
            f"{PREFIX}_queue_time_seconds",
            "Time requests waited in the engine's queue before running", labels=["model"])
        for model in self._models:
            stats = model.engine.stats()
            for family, value in zip(families, _engine_values(stats), strict=True):
                family.add_metric([model.name], value)
            _add_queue_histogram(queue, model.name, stats)
        yield from families
        yield queue


def _engine_families() -> list[GaugeMetricFamily | CounterMetricFamily]:
    labels = ["model"]
    e = f"{PREFIX}_engine"
    return [
        GaugeMetricFamily(f"{e}_running", "Requests the engine is running", labels=labels),
        GaugeMetricFamily(f"{e}_waiting", "Requests waiting in the engine's queue", labels=labels),
        GaugeMetricFamily(f"{e}_kv_cache_usage_ratio", "KV cache in use (0-1)", labels=labels),
        CounterMetricFamily(f"{e}_prompt_tokens", "Prompt tokens the engine processed",
                            labels=labels),
        CounterMetricFamily(f"{e}_generation_tokens", "Tokens the engine generated",
                            labels=labels),
        CounterMetricFamily(f"{e}_spec_draft_tokens", "Draft tokens the engine proposed",
                            labels=labels),
        CounterMetricFamily(f"{e}_spec_accepted_tokens", "Draft tokens the engine accepted",
                            labels=labels),
    ]


def _engine_values(stats: EngineStats) -> tuple[float, ...]:
    return (stats.running, stats.waiting, stats.kv_cache_usage, stats.prompt_tokens_total,
            stats.generation_tokens_total, stats.spec_drafted_total, stats.spec_accepted_total)


def _add_queue_histogram(family: HistogramMetricFamily, name: str, stats: EngineStats) -> None:
    counts = list(stats.queue_time_counts) or [0] * (len(QUEUE_TIME_BUCKETS_S) + 1)
    bounds = [str(b) for b in QUEUE_TIME_BUCKETS_S] + ["+Inf"]
    cumulative, buckets = 0, []
    for bound, count in zip(bounds, counts, strict=True):
        cumulative += count
        buckets.append((bound, float(cumulative)))
    family.add_metric([name], buckets, stats.queue_time_sum_s)
