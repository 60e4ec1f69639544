"""Acceptance of a greedy draft, computed offline from teacher-forced agreement.

Under greedy verification a draft token at position ``i`` of a step is accepted iff
the tokens before it were accepted and it equals the target's token. Accepted tokens
equal the target's, so the draft's context at every accepted position is exactly the
target's own prefix: per-token agreement under teacher forcing therefore gives the
exact acceptance vLLM will see (up to float noise), without running vLLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AcceptanceReport:
    """Speculation steps simulated with ``k`` draft tokens per step."""

    k: int
    steps: int = 0
    drafted: int = 0
    accepted: int = 0
    accepted_per_position: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError("k must be at least 1")
        if not 0 <= self.accepted <= self.drafted:
            raise ValueError("accepted must be within [0, drafted]")

    @property
    def rate(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def mean_accepted_length(self) -> float:
        """Tokens per target forward: accepted drafts plus the target's own token."""
        return 1.0 + self.accepted / self.steps if self.steps else 1.0

    def rate_by_position(self) -> list[float]:
        """Share of steps whose draft was accepted up to and including each position."""
        return [count / self.steps if self.steps else 0.0 for count in self.accepted_per_position]

    def merge(self, other: AcceptanceReport) -> AcceptanceReport:
        if other.k != self.k:
            raise ValueError("cannot merge reports for different k")
        per_pos = [a + b for a, b in zip(self._padded(), other._padded(), strict=True)]
        return AcceptanceReport(self.k, self.steps + other.steps, self.drafted + other.drafted,
                                self.accepted + other.accepted, tuple(per_pos))

    def _padded(self) -> list[int]:
        return list(self.accepted_per_position) + [0] * (self.k - len(self.accepted_per_position))


def simulate(matches: Sequence[bool], k: int) -> AcceptanceReport:
    """Steps over one answer; ``matches[t]``: the draft's argmax equals answer token ``t``.

    Token 0 comes from the target's prefill; each step then drafts up to ``k`` tokens
    (fewer near the end), accepts the matching run, and adds the target's own token.
    """
    runs = [0] * len(matches)
    for t in range(len(matches) - 1, -1, -1):
        runs[t] = runs[t + 1] + 1 if matches[t] and t + 1 < len(matches) else int(matches[t])
    return simulate_runs(runs, k)


def simulate_runs(runs: Sequence[int], k: int) -> AcceptanceReport:
    """As ``simulate``, given for each answer token ``t`` how many drafts in a row a step
    starting there would get right (an EAGLE head drafts each step afresh)."""
    per_pos = [0] * k
    steps = drafted = accepted = 0
    t = 1
    while t < len(runs):
        width = min(k, len(runs) - t)
        run = min(runs[t], width)
        for i in range(run):
            per_pos[i] += 1
        steps += 1
        drafted += width
        accepted += run
        t += run + 1
    return AcceptanceReport(k, steps, drafted, accepted, tuple(per_pos))
