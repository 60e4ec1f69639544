"""One batch line through the serving pipeline, like an online request minus HTTP.

The line is planned, reserved (batch prices, ``batch_id`` on its ledger row), run on the
engine and settled like any request; its output-file line carries the response body an
online request would have returned, or the error envelope with its status code.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.batches.leases import ClaimedLine
from gateway.batches.tables import DONE, FAILED
from gateway.errors import (
    BudgetExceededError,
    GatewayError,
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
# Whether any of these earlier attempts' request ids was billed (the ledger's any_billed).
BilledBefore = Callable[[list[str]], Awaitable[bool]]
# Whether this attempt may bill the line: no earlier attempt was billed and it still
# holds the line's lease (the worker asks the ledger and the lease, at settlement).
MayBill = Callable[[], Awaitable[bool]]


class _AnsweredOnce:
    """A batch line pays once, for an attempt that answered it. An attempt cut short (a
    shutdown, an engine failure, its lease lost) is recorded with no tokens and no cost;
    so is a retry of a line an earlier attempt was already billed for (a crash between
    the settlement and the line's result being stored)."""

    def __init__(self, inner: Ticket, may_bill: MayBill) -> None:
        self._inner = inner
        self._may_bill = may_bill

    async def settle(self, outcome: Outcome) -> Settled:
        if outcome.status in ("aborted", "error") or not await self._may_bill():
            outcome = dataclasses.replace(outcome, usage=Usage(0, 0))
        return await self._inner.settle(outcome)


async def _execute(pipeline: Pipeline, may_bill: MayBill, principal: Principal,
                   line: ClaimedLine, endpoint: str) -> dict[str, Any]:
    fields = line.body if endpoint == "/v1/embeddings" else {**line.body, "stream": False}
    body = ENDPOINTS[endpoint].model_validate(fields)
    call = Call(body, principal, line.request_id, batch_id=line.batch_id,  # type: ignore[arg-type]
                settle_policy=lambda ticket: _AnsweredOnce(ticket, may_bill))
    exchange = await pipeline.serve(call)
    done = await exchange.complete()
    assert done is not None, "a batch line has no client to go away"
    return done.body


class RetryLater(Exception):
    """The line hit a passing limit (RPM/TPM, engine busy): run it again later."""

    def __init__(self, after_s: float) -> None:
        super().__init__(f"retry after {after_s} s")
        self.after_s = after_s


async def run_line(pipeline: Pipeline, may_bill: MayBill, principal: Principal,
                   line: ClaimedLine, endpoint: str) -> tuple[str, dict[str, Any]]:
    """(DONE or FAILED, the line for the output or error file); ``RetryLater`` when a
    rate limit or an unavailable engine should just delay the line."""
    status, body = 200, {}
    try:
        body = await _execute(pipeline, may_bill, principal, line, endpoint)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first.get("loc", ())) or None
        status, body = 400, error_envelope(first.get("msg", "invalid body"),
                                           "invalid_request_error", param)
    except (RateLimitError, ServiceUnavailableError) as exc:
        if isinstance(exc, BudgetExceededError):  # the budget will not come back by waiting
            status, body = exc.status_code, exc.envelope()
        else:
            raise RetryLater(exc.retry_after or 5.0) from exc
    except GatewayError as exc:
        status, body = exc.status_code, exc.envelope()
    except Exception as exc:  # a line's failure never stops the batch
        error = as_gateway_error(exc)
        status, body = error.status_code, error.envelope()
    return (DONE if status == 200 else FAILED), result_line(line, status, body)


def result_line(line: ClaimedLine, status: int, body: dict[str, Any]) -> dict[str, Any]:
    """The line's entry in the batch's output (200) or error file (anything else)."""
    return {"id": f"batch_req_{secrets.token_hex(12)}", "custom_id": line.custom_id,
            "response": {"status_code": status, "request_id": line.request_id, "body": body},
            "error": None}
