"""What one fair queue counts per tenant, for ``/metrics`` (read at scrape time)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# Upper bounds (seconds) of the queue-wait histogram; a last bucket holds the rest.
WAIT_BUCKETS_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass
class FlowStats:
    waiting: int = 0  # requests of this tenant in the queue now
    admitted: int = 0
    timeouts: int = 0  # left past their queue deadline (429)
    abandoned: int = 0  # their client went away while they waited
    served_tokens: int = 0  # prompt + generated tokens of its admitted requests, once ended
    wait_sum_s: float = 0.0
    wait_counts: list[int] = field(default_factory=lambda: [0] * (len(WAIT_BUCKETS_S) + 1))


class QueueStats:
    """Per tenant (the queue's flows); bounded by the tenants that reached this gateway."""

    def __init__(self) -> None:
        self.flows: dict[str, FlowStats] = {}

    def _of(self, flow: str) -> FlowStats:
        stats = self.flows.get(flow)
        if stats is None:
            stats = self.flows[flow] = FlowStats()
        return stats

    def queued(self, flow: str) -> None:
        self._of(flow).waiting += 1

    def left(self, flow: str) -> None:
        self._of(flow).waiting -= 1

    def admitted(self, flow: str, waited_s: float) -> None:
        stats = self._of(flow)
        stats.admitted += 1
        stats.wait_sum_s += waited_s
        stats.wait_counts[bisect.bisect_left(WAIT_BUCKETS_S, waited_s)] += 1

    def timed_out(self, flow: str) -> None:
        self._of(flow).timeouts += 1

    def abandoned(self, flow: str) -> None:
        self._of(flow).abandoned += 1

    def served(self, flow: str, tokens: int) -> None:
        self._of(flow).served_tokens += max(0, tokens)
