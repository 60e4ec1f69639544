"""Acceptance over time and the "draft stale" signal.

The engine's speculation counters only grow; what an operator needs is the recent
acceptance (has the traffic drifted away from what the draft was trained on?). This
keeps per-interval buckets for a sliding window and flags the draft as stale when the
window's acceptance, over enough drafted tokens to mean something, falls below the
configured floor.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class HealthPolicy:
    floor: float = 0.0  # 0 disables the stale signal
    window_s: float = 300.0
    bucket_s: float = 10.0
    min_drafted: int = 256  # fewer drafted tokens in the window: no verdict

    def __post_init__(self) -> None:
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError("floor must be in [0, 1]")
        if not 0 < self.bucket_s <= self.window_s:
            raise ValueError("need 0 < bucket_s <= window_s")
        if self.min_drafted < 1:
            raise ValueError("min_drafted must be at least 1")


@dataclass
class _Bucket:
    start: float
    drafts: int = 0
    drafted: int = 0
    accepted: int = 0
    accepted_per_pos: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class SpeculationHealth:
    """The window's view: acceptance overall and by position, and the verdict."""

    window_drafts: int
    window_drafted: int
    window_accepted: int
    window_accepted_per_position: tuple[int, ...]
    stale: bool
    history: tuple[tuple[float, float], ...]  # (bucket start, acceptance) oldest first

    @property
    def window_acceptance(self) -> float | None:
        return self.window_accepted / self.window_drafted if self.window_drafted else None

    def window_rate_by_position(self) -> tuple[float, ...]:
        d = self.window_drafts
        return tuple(c / d if d else 0.0 for c in self.window_accepted_per_position)


class AcceptanceMonitor:
    """Not thread-safe: the owner (``StatCollector``) holds its lock around calls."""

    def __init__(self, policy: HealthPolicy) -> None:
        self._policy = policy
        self._buckets: deque[_Bucket] = deque()

    def observe(self, now: float, drafts: int, drafted: int, accepted: int,
                accepted_per_pos: list[int]) -> None:
        if drafted <= 0:
            return
        bucket = self._current(now)
        bucket.drafts += drafts
        bucket.drafted += drafted
        bucket.accepted += accepted
        missing = len(accepted_per_pos) - len(bucket.accepted_per_pos)
        bucket.accepted_per_pos.extend([0] * max(0, missing))
        for pos, count in enumerate(accepted_per_pos):
            bucket.accepted_per_pos[pos] += count

    def health(self, now: float) -> SpeculationHealth:
        self._expire(now)
        drafts = drafted = accepted = 0
        per_pos: list[int] = []
        for b in self._buckets:
            drafts += b.drafts
            drafted += b.drafted
            accepted += b.accepted
            per_pos.extend([0] * (len(b.accepted_per_pos) - len(per_pos)))
            for pos, count in enumerate(b.accepted_per_pos):
                per_pos[pos] += count
        policy = self._policy
        stale = (policy.floor > 0 and drafted >= policy.min_drafted
                 and accepted / drafted < policy.floor)
        history = tuple((b.start, b.accepted / b.drafted) for b in self._buckets if b.drafted)
        return SpeculationHealth(drafts, drafted, accepted, tuple(per_pos), stale, history)

    def _current(self, now: float) -> _Bucket:
        self._expire(now)
        start = now - now % self._policy.bucket_s
        if not self._buckets or self._buckets[-1].start < start:
            self._buckets.append(_Bucket(start))
        return self._buckets[-1]

    def _expire(self, now: float) -> None:
        while self._buckets and self._buckets[0].start <= now - self._policy.window_s:
            self._buckets.popleft()
