"""The 429s a limiter answers with (OpenAI envelope, ``Retry-After``).

Messages say whether the key's, the tenant's or the end user's limit was reached, never a
tenant's name.
"""

from __future__ import annotations

from typing import Literal

from gateway.errors import BudgetExceededError, InvalidRequestError, RateLimitError
from gateway.limits.quota import Charge, Claim, Windows, retry_after

Limit = Literal["rpm", "tpm", "budget", "parallel"]
PARALLEL_RETRY_S = 1


def refusal(limit: Limit, claim: Claim, charge: Charge, windows: Windows,
            now: float, slots: int = 1) -> RateLimitError:
    quota, whose = claim.quota, f"this {claim.subject.label}'s"
    minute = retry_after(windows.minute_ends, now)
    if limit == "rpm":
        return RateLimitError(
            f"Rate limit reached: {whose} limit of {quota.rpm} requests per minute.",
            retry_after=minute)
    if limit == "tpm":
        if quota.tpm is not None and charge.tokens > quota.tpm:
            return RateLimitError(
                f"This request may use {charge.tokens} tokens (prompt + max_tokens x n), more "
                f"than {whose} limit of {quota.tpm} tokens per minute. Lower max_tokens.",
                code="tokens_exceed_limit", retry_after=minute)
        return RateLimitError(
            f"Rate limit reached: {whose} limit of {quota.tpm} tokens per minute (this request "
            f"reserves {charge.tokens} tokens: prompt + max_tokens x n).",
            retry_after=minute)
    if limit == "parallel":
        holds = f" (this request holds {slots}: n x prompts)" if slots > 1 else ""
        return RateLimitError(
            f"Too many requests at once: {whose} limit is {claim.max_parallel} in "
            f"parallel{holds}.", code="parallel_requests_exceeded", retry_after=PARALLEL_RETRY_S)
    period = "daily" if quota.budget_period == "day" else "monthly"
    return BudgetExceededError(
        f"{whose.capitalize()} {period} budget of {quota.budget_usd} USD does "
        "not cover this request's worst-case cost (prompt + max_tokens x n). Lower "
        "max_tokens or raise the budget.",
        retry_after=retry_after(windows.period_ends, now))


def fanout_refusal(claims: tuple[Claim, ...], slots: int,
                   param: str) -> InvalidRequestError | None:
    """A request that alone starts more sequences than a claim's parallel limit can never
    pass: a 400 naming the field that multiplies them (``n``, ``prompt``), not a 429."""
    for claim in claims:
        if claim.max_parallel is not None and slots > claim.max_parallel:
            return InvalidRequestError(
                f"This request starts {slots} sequences at once (n x prompts), more than "
                f"this {claim.subject.label}'s limit of {claim.max_parallel} in parallel; "
                f"lower {param}.", param=param, code="parallel_requests_exceed_limit")
    return None


def first_exceeded(claim: Claim, charge: Charge, requests: int, tokens: int,
                   spent_nano: int, running: int, slots: int = 1) -> Limit | None:
    """Which limit ``charge`` would break given the current counters (None: it fits)."""
    quota = claim.quota
    if quota.rpm is not None and requests + 1 > quota.rpm:
        return "rpm"
    if quota.tpm is not None and tokens + charge.tokens > quota.tpm:
        return "tpm"
    budget = quota.budget_nano
    if budget is not None and spent_nano + charge.cost_nano > budget:
        return "budget"
    if claim.max_parallel is not None and running + slots > claim.max_parallel:
        return "parallel"
    return None
