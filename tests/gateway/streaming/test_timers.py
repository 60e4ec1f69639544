"""One timer per run and per response: the stall and send timeouts keep their exact bounds
(a wait or a send cut off at its own deadline, never before; outside cancellation stays a
cancellation) without a timer per token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sse_starlette.sse import SendTimeoutError

from engine.fake import FakeEngine
from engine.protocol import GenerationRequest, SamplingSpec
from gateway.errors import ServiceUnavailableError
from gateway.serving.accounting import Outcome, Settled
from gateway.serving.run import RequestRun
from gateway.streaming.response import StreamResponse


class Ticket:
    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    async def settle(self, outcome: Outcome) -> Settled:
        self.outcomes.append(outcome)
        return Settled()


def _run(engine: FakeEngine, stall_s: float, ticket: Ticket, tokens: int = 8) -> RequestRun:
    request = GenerationRequest("r1", (1, 2, 3), SamplingSpec(tokens))
    return RequestRun(engine, [request], ticket, stall_s)


async def test_run_when_outputs_come_faster_than_the_stall_timeout_then_never_cut_off() -> None:
    engine = FakeEngine(reply="abcdefgh", token_delay_s=0.03)  # 8 x 0.03 s > one 0.1 s stall
    ticket = Ticket()
    run = _run(engine, 0.1, ticket)
    outputs = [out async for out in run.outputs()]
    await run.close()
    assert len(outputs) == 8 and ticket.outcomes[0].status == "ok"


async def test_run_when_engine_stalls_mid_stream_then_503_at_that_waits_deadline() -> None:
    engine = FakeEngine(reply="abcdefgh", token_delay_s=0.03)
    ticket = Ticket()
    run = _run(engine, 0.2, ticket)
    seen = 0
    with pytest.raises(ServiceUnavailableError, match="produced nothing"):
        async for _ in run.outputs():
            seen += 1
            if seen == 3:
                engine.token_delay_s = 5.0  # the next output never comes in time
                started = time.monotonic()
    waited = time.monotonic() - started
    await run.close()
    assert 0.19 <= waited < 1.0  # cut off at its own deadline, not an earlier wait's
    assert ticket.outcomes[0].status == "error" and engine.aborted == ["r1"]


async def test_run_when_reader_cancelled_then_cancellation_not_a_stall_and_billed_in_full(
) -> None:
    engine = FakeEngine(reply="abcdefgh", token_delay_s=0.05)
    ticket = Ticket()
    run = _run(engine, 0.5, ticket)

    async def read() -> None:
        async for _ in run.outputs():
            pass

    task = asyncio.create_task(read())
    await asyncio.sleep(0.12)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await run.close()
    outcome = ticket.outcomes[0]
    assert outcome.status == "aborted" and outcome.usage.completion_tokens >= 2


def _response(chunks: int, timeout_s: float) -> StreamResponse:
    async def events() -> AsyncIterator[dict[str, str]]:
        for index in range(chunks):
            yield {"data": str(index)}

    return StreamResponse(events(), sep="\n", ping=0, send_timeout=timeout_s)


async def _never() -> dict[str, Any]:
    await asyncio.Event().wait()
    return {}


async def test_stream_when_each_send_is_quick_then_all_sent_past_many_timeouts() -> None:
    sent: list[bytes] = []

    async def slowish(message: Any) -> None:  # each send well inside its own bound
        await asyncio.sleep(0.02)
        sent.append(message.get("body", b""))

    await _response(10, 0.05)({"type": "http", "method": "POST"}, _never, slowish)
    assert sum(1 for body in sent if body.startswith(b"data:")) == 10


async def test_stream_when_a_send_blocks_past_its_timeout_then_send_timeout_error() -> None:
    count = 0

    async def stuck(message: Any) -> None:
        nonlocal count
        count += 1
        if count == 3:  # the third message (second chunk) never drains
            await asyncio.Event().wait()

    started = time.monotonic()
    with pytest.raises(SendTimeoutError):
        await _response(10, 0.2)({"type": "http", "method": "POST"}, _never, stuck)
    assert 0.19 <= time.monotonic() - started < 1.0


async def test_stream_when_cancelled_from_outside_during_a_send_then_cancelled_not_timeout(
) -> None:
    async def stuck(message: Any) -> None:
        if message.get("body", b"").startswith(b"data:"):
            await asyncio.Event().wait()

    task = asyncio.create_task(
        _response(3, 5.0)({"type": "http", "method": "POST"}, _never, stuck))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_stream_when_chunks_are_sent_then_no_cancel_scope_per_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import anyio  # sse-starlette calls anyio.move_on_after through the module

    scopes: list[float | None] = []
    real = anyio.move_on_after

    def counted(delay: float | None, shield: bool = False) -> Any:
        scopes.append(delay)
        return real(delay, shield=shield)

    monkeypatch.setattr(anyio, "move_on_after", counted)
    sent: list[Any] = []

    async def sink(message: Any) -> None:
        sent.append(message)

    await _response(50, 30.0)({"type": "http", "method": "POST"}, _never, sink)
    assert len(sent) == 52 and scopes == []  # start, 50 chunks, end: none in a cancel scope
