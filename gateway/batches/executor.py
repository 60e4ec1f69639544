"""One batch line through the same path as an online request, minus HTTP.

The line is planned, reserved (batch prices, ``batch_id`` on its ledger row), run on the
engine and settled like any request; its output-file line carries the response body an
online request would have returned, or the error envelope with its status code.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from typing import Any

from pydantic import ValidationError

from engine.protocol import GenerationRequest
from gateway.batches.store import ClaimedLine
from gateway.batches.tables import DONE, FAILED
from gateway.errors import (
    BudgetExceededError,
    GatewayError,
    RateLimitError,
    ServiceUnavailableError,
    as_gateway_error,
    error_envelope,
)
from gateway.http.schemas import ChatCompletionRequest, CompletionRequest
from gateway.http.state import GatewayState
from gateway.serving.accounting import Outcome, Principal, Ticket
from gateway.serving.openai_format import ResponseFormat
from gateway.serving.planning import GenerationPlan, plan_chat, plan_completion
from gateway.serving.run import RequestRun
from gateway.serving.tally import Usage


class _AnsweredOnce:
    """A batch line pays once, for an attempt that answered it. An attempt cut short (a
    shutdown, an engine failure) is recorded with no tokens and no cost; so is a retry of
    a line an earlier attempt was already billed for (a crash between the settlement and
    the line's result being stored)."""

    def __init__(self, inner: Ticket, already_billed: bool) -> None:
        self._inner = inner
        self._already_billed = already_billed

    async def settle(self, outcome: Outcome) -> dict[str, Any]:
        if self._already_billed or outcome.status in ("aborted", "error"):
            outcome = dataclasses.replace(outcome, usage=Usage(0, 0))
        return await self._inner.settle(outcome)


async def _billed_before(state: GatewayState, line: ClaimedLine) -> bool:
    if state.metering is None or line.attempt == 1:
        return False
    earlier = [f"{line.batch_id}-{line.line}-{k}" for k in range(1, line.attempt)]
    return await state.metering.ledger.any_billed(earlier)


async def _plan(state: GatewayState, endpoint: str, body: dict[str, Any]) -> GenerationPlan:
    limits = state.settings.limits
    if endpoint == "/v1/chat/completions":
        chat = ChatCompletionRequest.model_validate(body)
        served = state.models.get(chat.model)
        return await plan_chat(chat, served.renderer, served.max_model_len, limits)
    completion = CompletionRequest.model_validate(body)
    served = state.models.get(completion.model)
    return await plan_completion(completion, served.renderer, served.max_model_len, limits)


async def _execute(state: GatewayState, principal: Principal, line: ClaimedLine,
                   endpoint: str) -> dict[str, Any]:
    plan = await _plan(state, endpoint, {**line.body, "stream": False})
    served = state.models.get(plan.model)
    opened = await state.accounting.open(principal, plan, line.request_id,
                                         batch_id=line.batch_id)
    ticket = _AnsweredOnce(opened, await _billed_before(state, line))
    request = GenerationRequest(request_id=line.request_id,
                                prompt_token_ids=plan.prompt_token_ids, sampling=plan.sampling,
                                cache_salt=principal.tenant)
    observer = state.observability.observe(line.request_id, served.name, principal.tenant)
    run = RequestRun(served.engine, request, ticket, state.settings.limits.stall_timeout_s,
                     observer)
    try:
        await run.prime()
        async for _ in run.outputs():
            pass
        extra = await run.settle()
    finally:
        await run.close()
    fmt = ResponseFormat(kind=plan.kind, request_id=f"batchreq-{line.request_id}",
                         model=served.name, created=int(time.time()),
                         want_logprobs=plan.sampling.logprobs is not None)
    return fmt.full(run.tally, extra)


class RetryLater(Exception):
    """The line hit a passing limit (RPM/TPM, engine busy): run it again later."""

    def __init__(self, after_s: float) -> None:
        super().__init__(f"retry after {after_s} s")
        self.after_s = after_s


async def run_line(state: GatewayState, principal: Principal, line: ClaimedLine,
                   endpoint: str) -> tuple[str, dict[str, Any]]:
    """(DONE or FAILED, the line for the output or error file); ``RetryLater`` when a
    rate limit or an unavailable engine should just delay the line."""
    status, body = 200, {}
    try:
        body = await _execute(state, principal, line, endpoint)
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
