"""One request relayed to an upstream, from the reservation to its settlement.

The body the client sent goes upstream with the upstream's model name, the planned
``max_tokens`` (what was reserved) and, for streams, ``include_usage`` so the upstream
reports what it billed (the client sees a usage chunk only if it asked). Responses come
back with our model name and ``usage.cost``. However the request ends (finished, upstream
failure, client gone, or a stream past ``limits.stream_deadline_s``, as on our own engine)
the upstream response is closed (the upstream stops generating) and the request is settled
once, shielded from cancellation, with what was relayed. It answers the pipeline as an
``Exchange``. The prompt is reserved and estimated with what is forwarded: the messages and
the tool, function and response-format definitions (``prompt_renderer``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
from pydantic import BaseModel

from gateway.errors import ServiceUnavailableError, as_gateway_error
from gateway.openai.shapes import usage_json
from gateway.serving.accounting import Outcome, Settled, Status, Ticket
from gateway.serving.exchange import Completed, Disconnected
from gateway.serving.formatting.responder import DONE, json_data
from gateway.serving.plan import GenerationPlan
from gateway.serving.rendering import PromptRenderer
from gateway.upstream.client import UpstreamClient, UpstreamModel, chunks
from gateway.upstream.received import Received
from gateway.upstream.tokens import RelayedChatCounter

# What goes upstream: the fields that shape the answer. Not ``service_tier`` (a dearer tier
# on our account), ``store`` / ``metadata`` (the upstream keeping our clients' data) or
# ``user`` (our tenants' end users), nor vLLM's own extensions.
FORWARDED = frozenset({
    "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n",
    "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
    "top_logprobs", "tools", "tool_choice", "parallel_tool_calls", "functions",
    "function_call", "response_format", "modalities", "suffix", "echo", "best_of"})
DEFAULT_DEADLINE_S = 1800.0  # limits.stream_deadline_s


def forwarded_body(body: BaseModel) -> dict[str, Any]:
    """The client's fields that go upstream, as they are sent."""
    return {k: v for k, v in body.model_dump(mode="json", exclude_unset=True,
                                             by_alias=True).items() if k in FORWARDED}


def prompt_renderer(model: UpstreamModel, body: BaseModel) -> PromptRenderer:
    """What plans (and so reserves and estimates) a relayed request's prompt: tiktoken over
    the messages and the definitions forwarded with them."""
    return RelayedChatCounter(model.counter, forwarded_body(body))


class StreamDeadlineError(ServiceUnavailableError):
    """A relayed stream ran past ``limits.stream_deadline_s``."""


class UpstreamRelay:
    def __init__(self, client: UpstreamClient, model: UpstreamModel, plan: GenerationPlan,
                 body: BaseModel, ticket: Ticket, *,
                 deadline_s: float = DEFAULT_DEADLINE_S) -> None:
        self._client = client
        self._model = model
        self._plan = plan
        self._body = forwarded_body(body)
        self._ticket = ticket
        self._deadline_s = deadline_s
        self._received = Received(plan.kind, plan.choices)
        self._response: httpx.Response | None = None
        self._started = time.monotonic()
        self._ttft: float | None = None
        self._failed = False
        self._settled: Settled | None = None
        self._last: dict[str, Any] = {}
        self._payload: dict[str, Any] | None = None  # a non-streamed answer, once fetched
        self.stream = plan.stream
        self.headers: dict[str, str] = {}

    @property
    def _path(self) -> str:
        return "/chat/completions" if self._plan.kind == "chat" else "/completions"

    def _upstream_body(self, stream: bool) -> dict[str, Any]:
        body = {**self._body, "model": self._model.upstream_model, "stream": stream}
        if "max_tokens" not in body and "max_completion_tokens" not in body:
            key = "max_completion_tokens" if self._plan.kind == "chat" else "max_tokens"
            body[key] = self._plan.sampling.max_tokens  # never more than was reserved
        if stream:
            body["stream_options"] = {"include_usage": True}
        else:
            body.pop("stream_options", None)
        return body

    def _status(self) -> Status:
        if self._failed:
            return "error"
        if not self._received.finished:
            return "aborted"
        return "length" if "length" in self._received.finish_reasons.values() else "ok"

    def _usage(self, settled: Settled) -> dict[str, Any]:
        usage, estimated = self._received.billed(self._plan.prompt_tokens, self._model.counter)
        body = usage_json(usage, settled)
        return {**body, "estimated": True} if estimated else body

    async def settle(self) -> Settled:
        """Settle once with what the upstream reported or sent; shielded from cancellation."""
        with anyio.CancelScope(shield=True):
            if self._response is not None:
                await self._response.aclose()  # a stream cut short stops upstream work
            if self._settled is None:
                usage, estimated = self._received.billed(self._plan.prompt_tokens,
                                                         self._model.counter)
                outcome = Outcome(usage=usage, status=self._status(), ttft_s=self._ttft,
                                  latency_s=time.monotonic() - self._started,
                                  estimated=estimated)
                self._settled = await self._ticket.settle(outcome)
            settled = self._settled
        return settled

    async def complete(self, disconnected: Disconnected | None = None,
                       timeout_s: float | None = None) -> Completed | None:
        """A non-streamed request: the upstream's answer (fetched by ``prime``) with our
        model name and cost."""
        del disconnected, timeout_s  # the upstream client's own timeout bounded the call
        assert self._payload is not None, "prime() first"
        self._received.add(self._payload, streamed=False)
        self._ttft = time.monotonic() - self._started
        settled = await self.settle()
        body = {**self._payload, "model": self._model.name, "usage": self._usage(settled)}
        return Completed(body, settled)

    async def prime(self) -> None:
        """Send the request, so that the upstream's refusal or failure still gets a clean
        status code (and the pipeline may try a fallback) before anything is answered."""
        try:
            if self.stream:
                self._response = await self._client.open_stream(
                    self._path, self._upstream_body(stream=True))
            else:
                self._payload = await self._client.post(self._path,
                                                         self._upstream_body(stream=False))
        except BaseException:
            self._failed = True
            await self.settle()
            raise

    async def _upstream_chunks(self) -> AsyncIterator[dict[str, Any]]:
        """The upstream's chunks until ``[DONE]``, or until the deadline: waiting for the
        next chunk is bounded by what is left of it."""
        assert self._response is not None, "prime() first"
        source = chunks(self._response)
        deadline = self._started + self._deadline_s
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._past_deadline()
                timer = asyncio.timeout(left)
                try:
                    async with timer:
                        chunk = await anext(source)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if not timer.expired():
                        raise
                    raise self._past_deadline() from None
                yield chunk
        finally:
            await source.aclose()

    def _past_deadline(self) -> StreamDeadlineError:
        return StreamDeadlineError(f"the stream ran longer than {self._deadline_s:.0f} s")

    async def _relayed(self) -> AsyncIterator[dict[str, Any]]:
        async for chunk in self._upstream_chunks():
            self._received.add(chunk, streamed=True)
            if self._ttft is None and self._received.content_seen:
                self._ttft = time.monotonic() - self._started
            self._last = chunk
            if chunk.get("choices"):
                yield {**{k: v for k, v in chunk.items() if k != "usage"},
                       "model": self._model.name}

    async def events(self) -> AsyncIterator[dict[str, str]]:
        """The client's event stream; a usage chunk (with cost) if asked, then ``[DONE]``."""
        try:
            async for chunk in self._relayed():
                yield {"data": json_data(chunk)}
            settled = await self.settle()
            if self._plan.stream_usage != "none":
                yield {"data": json_data({
                    "id": self._last.get("id"), "object": self._last.get("object"),
                    "created": self._last.get("created"), "model": self._model.name,
                    "choices": [], "usage": self._usage(settled)})}
        except Exception as exc:  # after the 200: report in-band, then end
            self._failed = not isinstance(exc, StreamDeadlineError)  # that one is cut short
            yield {"data": json_data(as_gateway_error(exc).envelope())}
        finally:
            await self.settle()
        yield {"data": DONE}
