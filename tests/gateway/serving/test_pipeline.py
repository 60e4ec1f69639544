"""The serving pipeline without HTTP: plan, cache, ticket, run, format around a fake engine."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from prometheus_client import CollectorRegistry

from engine.errors import EngineRequestError
from engine.fake import CharRenderer, FakeEngine
from engine.protocol import EngineOutput, GenerationRequest
from gateway.caching.cache import ResponseCache
from gateway.errors import InvalidRequestError, ServiceUnavailableError
from gateway.observability.observer import NO_OBSERVER, RunObserver
from gateway.openai.bodies import ChatCompletionRequest, CompletionRequest
from gateway.serving.accounting import (
    ANONYMOUS,
    Outcome,
    Settled,
    Ticket,
    Unmetered,
)
from gateway.serving.pipeline import Call, Pipeline
from gateway.serving.registry import ModelRegistry, ServedModel
from gateway.settings import LimitSettings, ResponseCacheSettings
from gateway.upstream.registry import UpstreamRegistry

MODEL = "m"


class RefusingEngine(FakeEngine):
    """An engine whose grammar backend refuses every request (no parameter named)."""

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        raise EngineRequestError("grammar error: unsupported feature")
        yield  # pragma: no cover


@dataclass
class Recorded:
    outcomes: list[Outcome] = field(default_factory=list)


def pipeline(engine: FakeEngine, draining: bool = False,
             accounting: Unmetered | None = None) -> Pipeline:
    registry = ModelRegistry([ServedModel(MODEL, engine, CharRenderer())])
    cache = ResponseCache(ResponseCacheSettings(backend="off"), None, CollectorRegistry())

    def observe(request_id: str, model: str, tenant: str) -> RunObserver:
        return NO_OBSERVER

    return Pipeline(registry, UpstreamRegistry(), accounting or Unmetered(), cache, observe,
                    LimitSettings(), lambda: draining)


def chat(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **fields})


async def test_serve_when_chat_collected_then_body_usage_and_unmetered_settlement() -> None:
    engine = FakeEngine(MODEL, reply="Hello.")
    exchange = await pipeline(engine).serve(Call(chat(), ANONYMOUS, "r1"))
    done = await exchange.complete()
    assert done is not None and done.settled == Settled()
    assert done.body["id"] == "chatcmpl-r1"
    assert done.body["choices"][0]["message"]["content"] == "Hello."
    assert done.body["usage"]["completion_tokens"] == len("Hello.")
    assert done.cost_headers == {}


async def test_serve_when_streamed_then_events_end_with_done_and_no_usage_unless_asked() -> None:
    engine = FakeEngine(MODEL, reply="Hey")
    exchange = await pipeline(engine).serve(Call(chat(stream=True), ANONYMOUS, "r2"))
    events = [e["data"] async for e in exchange.events()]
    assert events[-1] == "[DONE]"
    assert all('"usage"' not in e for e in events[:-1])


async def test_serve_when_gateway_drains_then_503_before_any_engine_work() -> None:
    engine = FakeEngine(MODEL)
    with pytest.raises(ServiceUnavailableError):
        await pipeline(engine, draining=True).serve(Call(chat(), ANONYMOUS, "r3"))
    assert engine.stats().prompt_tokens_total == 0


async def test_serve_when_engine_refuses_a_constrained_request_then_400_names_the_field() -> None:
    body = chat(response_format={"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object"}}})
    with pytest.raises(InvalidRequestError) as refused:
        await pipeline(RefusingEngine(MODEL)).serve(Call(body, ANONYMOUS, "r4"))
    assert refused.value.param == "response_format"


class CountingTicket:
    def __init__(self, seen: Recorded) -> None:
        self._seen = seen

    async def settle(self, outcome: Outcome) -> Settled:
        self._seen.outcomes.append(outcome)
        return Settled()


async def test_serve_when_call_has_a_settle_policy_then_it_wraps_the_ticket_once() -> None:
    seen = Recorded()
    wrapped: list[Ticket] = []

    def policy(ticket: Ticket) -> Ticket:
        wrapped.append(ticket)
        return CountingTicket(seen)

    engine = FakeEngine(MODEL, reply="ok")
    call = Call(CompletionRequest(model=MODEL, prompt="x", max_tokens=5), ANONYMOUS, "r5",
                settle_policy=policy)
    exchange = await pipeline(engine).serve(call)
    assert await exchange.complete() is not None
    assert len(wrapped) == 1 and len(seen.outcomes) == 1
    assert seen.outcomes[0].usage.completion_tokens == 2 and seen.outcomes[0].status == "ok"


async def test_serve_when_greedy_n_is_two_then_two_engine_requests_and_prompt_billed_once(
) -> None:
    engine = FakeEngine(MODEL, reply="same")
    exchange = await pipeline(engine).serve(Call(chat(n=2, temperature=0), ANONYMOUS, "r6"))
    done = await exchange.complete()
    assert done is not None
    prompt = len("user: hi\nassistant: ")
    assert engine.stats().prompt_tokens_total == 2 * prompt  # two engine requests
    assert done.body["usage"]["prompt_tokens"] == prompt  # the prompt is billed once
    assert [c["message"]["content"] for c in done.body["choices"]] == ["same", "same"]
