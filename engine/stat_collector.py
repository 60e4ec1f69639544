"""Collects vLLM's own scheduler and iteration counters (a vLLM stat logger).

These are the engine's numbers, independent of the gateway's: the reconciliation
tests compare the ledger against them, and ``/metrics`` exports them.
"""

from __future__ import annotations

import bisect
import threading
import time
from typing import Any

from engine.protocol import QUEUE_TIME_BUCKETS_S, EngineStats
from engine.speculation_health import AcceptanceMonitor, HealthPolicy


class StatCollector:
    """Thread-safe running totals fed by vLLM's stat-logger hook."""

    def __init__(self, health: HealthPolicy | None = None) -> None:
        self._lock = threading.Lock()
        self._monitor = AcceptanceMonitor(health or HealthPolicy())
        self._drafts = 0
        self._running = 0
        self._waiting = 0
        self._kv_usage = 0.0
        self._prompt_tokens = 0
        self._generation_tokens = 0
        self._drafted = 0
        self._accepted = 0
        self._accepted_per_pos: list[int] = []
        self._queue_counts = [0] * (len(QUEUE_TIME_BUCKETS_S) + 1)
        self._queue_sum = 0.0
        self._steps = 0  # record() calls: engine steps whose outputs arrived (liveness)

    @property
    def steps(self) -> int:
        return self._steps

    def factory(self, vllm_config: Any, engine_index: int = 0) -> Any:
        """A ``StatLoggerFactory`` for ``AsyncLLM(stat_loggers=[...])``."""
        from vllm.v1.metrics.loggers import StatLoggerBase

        collector = self

        class _Logger(StatLoggerBase):
            def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
                pass

            def record(
                self,
                scheduler_stats: Any,
                iteration_stats: Any,
                mm_cache_stats: Any = None,
                engine_idx: int = 0,
            ) -> None:
                collector.record(scheduler_stats, iteration_stats)

            def log_engine_initialized(self) -> None:
                pass

        return _Logger(vllm_config, engine_index)

    def record(self, scheduler_stats: Any, iteration_stats: Any) -> None:
        with self._lock:
            self._steps += 1
            if iteration_stats is not None:
                self._prompt_tokens += iteration_stats.num_prompt_tokens
                self._generation_tokens += iteration_stats.num_generation_tokens
                for finished in getattr(iteration_stats, "finished_requests", ()):
                    self._add_queue_time(finished.queued_time)
            if scheduler_stats is None:
                return
            self._running = scheduler_stats.num_running_reqs
            self._waiting = scheduler_stats.num_waiting_reqs
            self._kv_usage = scheduler_stats.kv_cache_usage
            spec = scheduler_stats.spec_decoding_stats
            if spec is not None:
                self._add_speculation(spec.num_drafts, spec.num_draft_tokens,
                                      spec.num_accepted_tokens, spec.num_accepted_tokens_per_pos)

    def _add_speculation(self, drafts: int, drafted: int, accepted: int,
                         per_pos: list[int]) -> None:
        self._monitor.observe(time.monotonic(), drafts, drafted, accepted, per_pos)
        self._drafts += drafts
        self._drafted += drafted
        self._accepted += accepted
        if len(self._accepted_per_pos) < len(per_pos):
            self._accepted_per_pos.extend([0] * (len(per_pos) - len(self._accepted_per_pos)))
        for pos, count in enumerate(per_pos):
            self._accepted_per_pos[pos] += count

    def _add_queue_time(self, seconds: float) -> None:
        self._queue_counts[bisect.bisect_left(QUEUE_TIME_BUCKETS_S, seconds)] += 1
        self._queue_sum += seconds

    def snapshot(self, unfinished: int) -> EngineStats:
        with self._lock:
            health = self._monitor.health(time.monotonic())
            return EngineStats(
                running=self._running,
                waiting=self._waiting,
                kv_cache_usage=self._kv_usage,
                prompt_tokens_total=self._prompt_tokens,
                generation_tokens_total=self._generation_tokens,
                unfinished_requests=unfinished,
                spec_drafted_total=self._drafted,
                spec_accepted_total=self._accepted,
                spec_accepted_per_position=tuple(self._accepted_per_pos),
                spec_drafts_total=self._drafts,
                spec_window_acceptance=health.window_acceptance,
                spec_window_rate_by_position=health.window_rate_by_position(),
                spec_draft_stale=health.stale,
                queue_time_counts=tuple(self._queue_counts),
                queue_time_sum_s=self._queue_sum,
            )
