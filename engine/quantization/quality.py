"""Quality measures for a quantized variant against its float32 original (pure functions).

Perplexity comes from the per-token log-probabilities that the serving engine itself assigns
to a held-out text; greedy agreement compares the token ids of greedy answers to a fixed
prompt set. ``evaluate`` produces both with vLLM; the tests hold them to bounds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def perplexity(token_logprobs: Sequence[float]) -> float:
    """exp of the mean negative log-likelihood per token."""
    if not token_logprobs:
        raise ValueError("no tokens to score")
    return math.exp(-sum(token_logprobs) / len(token_logprobs))


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    length = 0
    for left, right in zip(a, b, strict=False):
        if left != right:
            break
        length += 1
    return length


@dataclass(frozen=True)
class Agreement:
    """How closely greedy answers follow the reference answers, prompt by prompt."""

    prompts: int
    identical: int
    mean_prefix_fraction: float  # common prefix / reference length, averaged over prompts

    def __post_init__(self) -> None:
        if not 0 <= self.identical <= self.prompts:
            raise ValueError("identical must be within [0, prompts]")
        if not 0.0 <= self.mean_prefix_fraction <= 1.0:
            raise ValueError("mean_prefix_fraction must be within [0, 1]")


def agreement(reference: Sequence[Sequence[int]], candidate: Sequence[Sequence[int]]) -> Agreement:
    if len(reference) != len(candidate) or not reference:
        raise ValueError("need the same, non-zero number of answers on both sides")
    fractions = []
    identical = 0
    for ref, cand in zip(reference, candidate, strict=True):
        identical += list(ref) == list(cand)
        fractions.append(common_prefix(ref, cand) / max(len(ref), 1))
    return Agreement(len(reference), identical, sum(fractions) / len(fractions))
