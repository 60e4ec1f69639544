"""The 429s a limiter answers with (OpenAI envelope, ``Retry-After``)."""

from __future__ import annotations

from typing import Literal

from gateway.errors import BudgetExceededError, RateLimitError
from gateway.limits.quota import Charge, Quota, Windows, retry_after

Limit = Literal["rpm", "tpm", "budget"]


def refusal(limit: Limit, quota: Quota, charge: Charge, windows: Windows,
            now: float) -> RateLimitError:
    if limit == "rpm":
        return RateLimitError(
            f"Rate limit reached: {quota.rpm} requests per minute.",
            retry_after=retry_after(windows.minute_ends, now))
    if limit == "tpm":
        if quota.tpm is not None and charge.tokens > quota.tpm:
            return RateLimitError(
                f"This request may use {charge.tokens} tokens (prompt + max_tokens x n), more "
                f"than this key's limit of {quota.tpm} tokens per minute. Lower max_tokens.",
                code="tokens_exceed_limit", retry_after=retry_after(windows.minute_ends, now))
        return RateLimitError(
            f"Rate limit reached: {quota.tpm} tokens per minute (this request reserves "
            f"{charge.tokens} tokens: prompt + max_tokens x n).",
            retry_after=retry_after(windows.minute_ends, now))
    return BudgetExceededError(
        f"This key's {quota.budget_period}ly budget of {quota.budget_usd} USD does not cover "
        "this request's worst-case cost (prompt + max_tokens x n). Lower max_tokens or "
        "raise the budget.",
        retry_after=retry_after(windows.period_ends, now))


def first_exceeded(quota: Quota, charge: Charge, requests: int, tokens: int,
                   spent_nano: int) -> Limit | None:
    """Which limit ``charge`` would break given the current counters (None: it fits)."""
    if quota.rpm is not None and requests + 1 > quota.rpm:
        return "rpm"
    if quota.tpm is not None and tokens + charge.tokens > quota.tpm:
        return "tpm"
    budget = quota.budget_nano
    if budget is not None and spent_nano + charge.cost_nano > budget:
        return "budget"
    return None
