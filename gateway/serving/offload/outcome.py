"""What a planning job gives back across a thread or a process: a plan or an error, and
the errors the pool itself answers with."""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass

from gateway.errors import InvalidRequestError, RateLimitError, ServiceUnavailableError
from gateway.serving.planning.job import Planned

log = logging.getLogger("llm_gateway.planning")
RETRY_AFTER_S = 1


@dataclass(frozen=True)
class Outcome:
    plan: Planned | None = None
    error: BaseException | None = None

    def __post_init__(self) -> None:
        if (self.plan is None) == (self.error is None):
            raise ValueError("an outcome is a plan or an error")

    def unwrap(self) -> Planned:
        if self.error is not None:
            raise self.error
        assert self.plan is not None
        return self.plan


def failed(exc: Exception) -> Outcome:
    """The error as it can cross a process boundary: a typed 4xx as it is; anything else
    (a bug) logged here with its traceback, and a plain error (a 500) in its place."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        log.exception("planning failed")
        return Outcome(error=RuntimeError(f"planning failed: {type(exc).__name__}"))
    return Outcome(error=exc)


def too_costly(param: str | None, limit_s: float, clock: str) -> InvalidRequestError:
    """A request whose planning overran its time limit: the client's 400, naming the field
    planning was working on (``clock``: CPU or wall seconds)."""
    field = f" while preparing {param}" if param else ""
    return InvalidRequestError(
        f"This request costs too much to prepare: planning it took more than {limit_s:g} "
        f"{clock} seconds{field}. Send a smaller or simpler {param or 'request'}.",
        param=param, code="request_too_costly")


def pool_busy(wait_s: float) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"Every planning worker stayed busy for {wait_s:g} s; retry shortly.",
        code="planning_busy", retry_after=RETRY_AFTER_S)


def share_busy(reason: str) -> RateLimitError:
    return RateLimitError(
        f"Too many large requests of this tenant are being prepared at once ({reason}); "
        "retry shortly.", code="planning_share_exceeded", retry_after=RETRY_AFTER_S)


def worker_failed() -> ServiceUnavailableError:
    return ServiceUnavailableError("A planning worker failed; retry shortly.",
                                   code="planning_unavailable", retry_after=RETRY_AFTER_S)
