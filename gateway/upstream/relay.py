"""One request relayed to an upstream, from the reservation to its settlement.

The body the client sent goes upstream with the upstream's model name, the planned
``max_tokens`` (what was reserved) and, for streams, ``include_usage`` so the upstream
reports what it billed. Responses come back with our model name and ``usage.cost``.
However the request ends (finished, upstream failure, client gone) it is settled once,
shielded from cancellation, like a request on our own engine.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx

from gateway.errors import as_gateway_error
from gateway.serving.accounting import Outcome, Status, Ticket
from gateway.serving.planning import GenerationPlan
from gateway.streaming.sse import DONE, json_event
from gateway.upstream.client import UpstreamClient, UpstreamModel, chunks
from gateway.upstream.received import Received


class UpstreamRelay:
    def __init__(self, client: UpstreamClient, model: UpstreamModel, plan: GenerationPlan,
                 body: dict[str, Any], ticket: Ticket) -> None:
        self._client = client
        self._model = model
        self._plan = plan
        self._body = body
        self._ticket = ticket
        self._received = Received(plan.kind, plan.sampling.n)
        self._response: httpx.Response | None = None
        self._started = time.monotonic()
        self._ttft: float | None = None
        self._failed = False
        self._settled: dict[str, Any] | None = None
        self._last: dict[str, Any] = {}

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

    def _usage(self) -> dict[str, Any]:
        usage, estimated = self._received.billed(len(self._plan.prompt_token_ids),
                                                 self._model.counter)
        fields: dict[str, Any] = {
            "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens}}
        return {**fields, "estimated": True} if estimated else fields

    async def settle(self) -> dict[str, Any]:
        """Settle once with what the upstream reported or sent; shielded from cancellation."""
        with anyio.CancelScope(shield=True):
            if self._response is not None:
                await self._response.aclose()  # a stream cut short stops upstream work
            if self._settled is None:
                usage, estimated = self._received.billed(len(self._plan.prompt_token_ids),
                                                         self._model.counter)
                outcome = Outcome(usage=usage, status=self._status(), ttft_s=self._ttft,
                                  latency_s=time.monotonic() - self._started,
                                  estimated=estimated)
                self._settled = await self._ticket.settle(outcome)
            settled = self._settled
        return settled

    async def complete(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """A non-streamed request: the upstream's response with our model name and cost."""
        try:
            payload = await self._client.post(self._path, self._upstream_body(stream=False))
        except BaseException:
            self._failed = True
            await self.settle()
            raise
        self._received.add(payload, streamed=False)
        self._ttft = time.monotonic() - self._started
        extra = await self.settle()
        return {**payload, "model": self._model.name, "usage": {**self._usage(), **extra}}, extra

    async def prime(self) -> None:
        """Open the upstream stream, so that its refusal still gets a clean status code."""
        try:
            self._response = await self._client.open_stream(self._path,
                                                            self._upstream_body(stream=True))
        except BaseException:
            self._failed = True
            await self.settle()
            raise

    async def _relayed(self) -> AsyncIterator[dict[str, Any]]:
        assert self._response is not None, "prime() first"
        async for chunk in chunks(self._response):
            self._received.add(chunk, streamed=True)
            if self._ttft is None and self._received.content_seen:
                self._ttft = time.monotonic() - self._started
            self._last = chunk
            if chunk.get("choices"):
                yield {**{k: v for k, v in chunk.items() if k != "usage"},
                       "model": self._model.name}

    async def events(self, include_usage: bool) -> AsyncIterator[dict[str, str]]:
        """The client's event stream; ends with a usage chunk (with cost) and ``[DONE]``."""
        try:
            async for chunk in self._relayed():
                yield json_event(chunk)
            extra = await self.settle()
            if include_usage:
                yield json_event({
                    "id": self._last.get("id"), "object": self._last.get("object"),
                    "created": self._last.get("created"), "model": self._model.name,
                    "choices": [], "usage": {**self._usage(), **extra}})
        except Exception as exc:  # after the 200: report in-band, then end
            self._failed = True
            yield json_event(as_gateway_error(exc).envelope())
        finally:
            await self.settle()
        yield {"data": DONE}
