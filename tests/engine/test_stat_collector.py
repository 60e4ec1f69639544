"""vLLM's stat-logger counters, fed with stand-in stats objects."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.protocol import QUEUE_TIME_BUCKETS_S
from engine.stat_collector import StatCollector


@dataclass
class Finished:
    queued_time: float


@dataclass
class Iteration:
    num_prompt_tokens: int = 0
    num_generation_tokens: int = 0
    finished_requests: list[Finished] = field(default_factory=list)


def test_queue_time_when_requests_finish_then_bucketed_by_upper_bound() -> None:
    collector = StatCollector()
    waits = [0.0, 0.005, 0.3, 1000.0]
    collector.record(None, Iteration(finished_requests=[Finished(w) for w in waits]))
    stats = collector.snapshot(unfinished=0)
    counts = stats.queue_time_counts
    assert len(counts) == len(QUEUE_TIME_BUCKETS_S) + 1
    assert counts[0] == 2  # 0.0 and exactly 0.005 (le semantics)
    assert counts[QUEUE_TIME_BUCKETS_S.index(0.5)] == 1
    assert counts[-1] == 1  # above every bound
    assert sum(counts) == len(waits)
    assert stats.queue_time_sum_s == sum(waits)
