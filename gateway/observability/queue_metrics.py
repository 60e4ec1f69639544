"""The fair queues' state on ``/metrics``, read when Prometheus scrapes: per model, the
seats in use and the capacity; per model and tenant, requests waiting, their waits, those
that timed out or left, and the tokens served (each tenant's share of a saturated engine)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from gateway.limits.queue_stats import WAIT_BUCKETS_S, FlowStats
from gateway.serving.queueing import ModelQueues

PREFIX = "llmgw_queue"


class QueueCollector(Collector):
    def __init__(self, queues: ModelQueues, tenant_label: Callable[[str], str]) -> None:
        self._queues = queues
        self._label = tenant_label  # bounded: the first tenants, then "other"

    def describe(self) -> list[Metric]:
        return []  # read at scrape time only

    def collect(self) -> Iterator[Metric]:
        seats = GaugeMetricFamily(f"{PREFIX}_seats_in_use",
                                  "Engine sequences admitted by the gateway's queue",
                                  labels=["model"])
        capacity = GaugeMetricFamily(f"{PREFIX}_capacity_seats",
                                     "Engine sequences the queue admits at once",
                                     labels=["model"])
        families = _tenant_families()
        for model, queue in self._queues:
            seats.add_metric([model], queue.in_use)
            capacity.add_metric([model], queue.capacity)
            for tenant, stats in self._merged(queue.stats.flows).items():
                _add_tenant(families, [model, tenant], stats)
        yield seats
        yield capacity
        yield from families

    def _merged(self, flows: dict[str, FlowStats]) -> dict[str, FlowStats]:
        """Per tenant label: tenants past the label cap are summed under ``other``."""
        merged: dict[str, FlowStats] = {}
        for tenant, stats in list(flows.items()):
            into = merged.setdefault(self._label(tenant), FlowStats())
            into.waiting += stats.waiting
            into.timeouts += stats.timeouts
            into.abandoned += stats.abandoned
            into.served_tokens += stats.served_tokens
            into.wait_sum_s += stats.wait_sum_s
            into.wait_counts = [a + b for a, b in zip(into.wait_counts, stats.wait_counts,
                                                      strict=True)]
        return merged


def _tenant_families() -> tuple[GaugeMetricFamily, HistogramMetricFamily,
                                CounterMetricFamily, CounterMetricFamily, CounterMetricFamily]:
    labels = ["model", "tenant"]
    return (
        GaugeMetricFamily(f"{PREFIX}_depth", "Requests waiting in the gateway's queue",
                          labels=labels),
        HistogramMetricFamily(f"{PREFIX}_wait_seconds",
                              "Time admitted requests waited in the gateway's queue",
                              labels=labels),
        CounterMetricFamily(f"{PREFIX}_timeouts", "Requests refused after queue_timeout_s",
                            labels=labels),
        CounterMetricFamily(f"{PREFIX}_abandoned", "Requests whose client left while queued",
                            labels=labels),
        CounterMetricFamily(f"{PREFIX}_served_tokens",
                            "Prompt + generated tokens of requests the queue admitted",
                            labels=labels),
    )


def _add_tenant(families: tuple[GaugeMetricFamily, HistogramMetricFamily, CounterMetricFamily,
                                CounterMetricFamily, CounterMetricFamily],
                labels: list[str], stats: FlowStats) -> None:
    depth, wait, timeouts, abandoned, served = families
    depth.add_metric(labels, stats.waiting)
    cumulative, buckets = 0, []
    for bound, count in zip([*map(str, WAIT_BUCKETS_S), "+Inf"], stats.wait_counts,
                            strict=True):
        cumulative += count
        buckets.append((bound, float(cumulative)))
    wait.add_metric(labels, buckets, stats.wait_sum_s)
    timeouts.add_metric(labels, stats.timeouts)
    abandoned.add_metric(labels, stats.abandoned)
    served.add_metric(labels, stats.served_tokens)
