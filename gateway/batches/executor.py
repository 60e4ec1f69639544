"""One batch line through the serving pipeline, like an online request minus HTTP.

The line is planned, reserved (batch prices, ``batch_id`` on its ledger row), run on the
engine and settled like any request; its output-file line carries the response body an
online request would have returned, or the error envelope with its status code.

How a line's attempt ends: answered, or refused with a status of its own (a 400, a 401,
an exhausted budget: final, in the error file); ``RetryLater`` for a passing condition met
before the engine got the line (a rate limit, the ledger or the engine unavailable: the
line waits, no attempt is counted); ``AttemptFailed`` when it failed after reaching the
engine (an engine failure or stall, a server error): a failed attempt, run again up to
``batches.max_attempts`` times.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.batches.leases import ClaimedLine, Failure
from gateway.batches.results import response_line
from gateway.batches.tables import DONE, FAILED
from gateway.errors import (
    BudgetExceededError,
    RateLimitError,
    ServiceUnavailableError,
    as_gateway_error,
    error_envelope,
)
from gateway.openai.bodies import ChatCompletionRequest, CompletionRequest
from gateway.openai.embedding_bodies import EmbeddingsRequest
from gateway.serving.accounting import Outcome, Principal, Settled, Ticket
from gateway.serving.pipeline import Call, Pipeline
from gateway.serving.tally import Usage

ENDPOINTS: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
    "/v1/embeddings": EmbeddingsRequest,
}
# Whether any of these earlier attempts' answers was billed (the ledger's any_answered).
AnsweredBefore = Callable[[list[str]], Awaitable[bool]]
# Whether this attempt may bill its answer: no earlier attempt's answer was billed and it
# still holds the line's lease (the worker asks the ledger and the lease, at settlement).
MayBill = Callable[[], Awaitable[bool]]


class _AnsweredOnce:
    """Every attempt of a batch line pays, on its own ledger row, for the tokens the
    engine generated for it: one cut short or failed (``aborted``/``error``: a time limit,
    an engine failure, a shutdown, its lease lost) pays what was generated before it
    ended, as an online request would. An answer is paid once: an attempt that answered
    is recorded with no tokens if it no longer holds the line (its answer is dropped; the
    attempt holding the line answers it) or an earlier attempt's answer was already paid
    (a crash between that settlement and the line's result being stored)."""

    def __init__(self, inner: Ticket, may_bill: MayBill) -> None:
        self._inner = inner
        self._may_bill = may_bill

    async def settle(self, outcome: Outcome) -> Settled:
        if outcome.status in ("ok", "length") and not await self._may_bill():
            outcome = dataclasses.replace(outcome, usage=Usage(0, 0))
        return await self._inner.settle(outcome)


class _Tickets:
    """The settle policy of a line's call; ``opened`` once a ticket was (a ledger row is
    written and the engine gets the line next)."""

    def __init__(self, may_bill: MayBill) -> None:
        self._may_bill = may_bill
        self.opened = False

    def __call__(self, ticket: Ticket) -> Ticket:
        self.opened = True
        return _AnsweredOnce(ticket, self._may_bill)


async def _execute(pipeline: Pipeline, tickets: _Tickets, principal: Principal,
                   line: ClaimedLine, endpoint: str) -> dict[str, Any]:
    fields = line.body if endpoint == "/v1/embeddings" else {**line.body, "stream": False}
    body = ENDPOINTS[endpoint].model_validate(fields)
    call = Call(body, principal, line.request_id, batch_id=line.batch_id,  # type: ignore[arg-type]
                settle_policy=tickets)
    exchange = await pipeline.serve(call)
    done = await exchange.complete()
    assert done is not None, "a batch line has no client to go away"
    return done.body


class RetryLater(Exception):
    """The line hit a passing limit (RPM/TPM, engine busy): run it again later."""

    def __init__(self, after_s: float) -> None:
        super().__init__(f"retry after {after_s} s")
        self.after_s = after_s


class AttemptFailed(Exception):
    """The attempt failed after the line reached the engine: counted, run again if
    attempts are left."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.code}: {failure.message}")
        self.failure = failure


def _server_error(exc: Exception, opened: bool) -> tuple[int, dict[str, Any]]:
    """A failure of the line's own (4xx) is its final status; a 5xx is a failed attempt
    once the line reached the engine, and before that a condition to wait out (a 503) or
    a final 500 (a failure planning the line, which would fail again)."""
    error = as_gateway_error(exc)
    if error.status_code >= 500 and opened:
        raise AttemptFailed(Failure(error.code or "server_error", error.message)) from exc
    if isinstance(error, ServiceUnavailableError):
        raise RetryLater(error.retry_after or 5.0) from exc
    return error.status_code, error.envelope()


async def run_line(pipeline: Pipeline, may_bill: MayBill, principal: Principal,
                   line: ClaimedLine, endpoint: str) -> tuple[str, dict[str, Any]]:
    """(DONE or FAILED, the line for the output or error file); ``RetryLater`` when a
    passing limit should just delay the line, ``AttemptFailed`` when the attempt failed."""
    tickets = _Tickets(may_bill)
    status, body = 200, {}
    try:
        body = await _execute(pipeline, tickets, principal, line, endpoint)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        status, body = 400, error_envelope(first.get("msg", "invalid body"),
                                           "invalid_request_error", param)
    except BudgetExceededError as exc:  # the budget will not come back by waiting
        status, body = exc.status_code, exc.envelope()
    except RateLimitError as exc:
        raise RetryLater(exc.retry_after or 5.0) from exc
    except Exception as exc:  # a line's failure never stops the batch
        status, body = _server_error(exc, tickets.opened)
    return (DONE if status == 200 else FAILED), result_line(line, status, body)


def result_line(line: ClaimedLine, status: int, body: dict[str, Any]) -> dict[str, Any]:
    """The line's entry in the batch's output (200) or error file (anything else)."""
    return response_line(line.custom_id, line.request_id, status, body)
