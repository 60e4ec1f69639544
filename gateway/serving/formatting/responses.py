"""The Responses API: a ``response`` object whole, or its official event sequence.

Events are named (``event: response.output_text.delta``) and numbered
(``sequence_number``); the stream opens with ``response.created`` and
``response.in_progress`` and ends with ``response.completed`` (or ``response.incomplete``
when the output limit cut it), whose ``usage`` carries the exact cost. A finished response
is handed to ``keep`` (the store), streamed or not.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError
from gateway.serving.accounting import Settled
from gateway.serving.formatting.responder import Json, json_data
from gateway.serving.formatting.response_items import ItemStream, numbered, whole_items
from gateway.serving.plan import GenerationPlan
from gateway.serving.reasoning import Reasoner, Split
from gateway.serving.run import RequestRun
from gateway.serving.tally import Tally
from gateway.serving.toolcalls.calls import Extracted, Piece
from gateway.serving.toolcalls.reader import call_stream, extract

Keep = Callable[[Json], Awaitable[None]]


@dataclass(frozen=True)
class ResponseEcho:
    """What the response object repeats of the request."""

    id: str
    model: str
    fields: tuple[tuple[str, Any], ...]  # instructions, tools, text, metadata, ...

    def __post_init__(self) -> None:
        if not self.id.startswith("resp_"):
            raise ValueError("a response id starts with resp_")


def response_usage(tally: Tally, settled: Settled | None) -> Json:
    usage = tally.usage()
    body: Json = {"input_tokens": usage.prompt_tokens,
                  "input_tokens_details": {"cached_tokens": usage.cached_tokens},
                  "output_tokens": usage.completion_tokens,
                  "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens or 0},
                  "total_tokens": usage.total_tokens}
    if settled is not None and settled.cost is not None:
        body["cost"] = float(settled.cost)
    return body


class ResponsesResponder:
    def __init__(self, plan: GenerationPlan, echo: ResponseEcho, tokenizer: Any,
                 keep: Keep, reasoner: Reasoner | None = None) -> None:
        self._plan = plan
        self._reasoner = reasoner  # a reasoning model: its span as a reasoning item
        self._echo = echo
        self._tokenizer = tokenizer
        self._keep = keep
        self._created = time.time()
        self._items = ItemStream()
        self._sequence = 0

    def _response(self, status: str, output: list[Json], usage: Json | None) -> Json:
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {"id": self._echo.id, "object": "response", "created_at": self._created,
                "status": status, "model": self._echo.model, "output": output,
                "error": None, "incomplete_details": incomplete, "usage": usage,
                "completed_at": time.time() if status != "in_progress" else None,
                **dict(self._echo.fields)}

    def _status(self, tally: Tally) -> str:
        return "incomplete" if tally.choices[0].finish_reason == "length" else "completed"

    def _read(self, text: str) -> Extracted:
        if self._plan.tools is None:
            return Extracted(text, ())
        return extract(self._plan.tools, self._tokenizer, text)

    async def full(self, tally: Tally, settled: Settled) -> Json:
        status = self._status(tally)
        text = tally.choices[0].text
        split = Split(None, text) if self._reasoner is None else self._reasoner.split(text)
        items = whole_items(self._read(split.content or ""), status, split.reasoning)
        body = self._response(status, items, response_usage(tally, settled))
        await self._keep(body)
        return body

    def _numbered(self, events: list[Json]) -> list[Json]:
        out = numbered(events, self._sequence)
        self._sequence += len(out)
        return out

    async def chunks(self, run: RequestRun) -> AsyncIterator[Json]:
        shell = self._response("in_progress", [], None)
        for event in self._numbered([{"type": "response.created", "response": shell},
                                     {"type": "response.in_progress", "response": shell}]):
            yield event
        tools = self._plan.tools
        reader = None if tools is None else call_stream(tools, self._tokenizer)
        thinking = None if self._reasoner is None else self._reasoner.stream()
        async for out in run.outputs():
            for delta in out.choices:
                split = (Split(None, delta.text) if thinking is None
                         else thinking.feed(delta.text, delta.token_ids))
                events = [] if split.reasoning is None else self._items.reason(split.reasoning)
                text = split.content or ""
                piece = (Piece(text) if reader is None
                         else reader.feed(text, delta.token_ids))
                events += self._items.feed(piece)
                if delta.finish_reason is not None:
                    if reader is not None:
                        events += self._items.feed(reader.end())
                    status = "incomplete" if delta.finish_reason == "length" else "completed"
                    events += self._items.close(status)
                for event in self._numbered(events):
                    yield event

    async def final(self, tally: Tally, settled: Settled) -> Json | None:
        status = self._status(tally)
        body = self._response(status, self._items.items, response_usage(tally, settled))
        await self._keep(body)
        kind = "response.incomplete" if status == "incomplete" else "response.completed"
        return self._numbered([{"type": kind, "response": body}])[0]

    def frame(self, chunk: Json) -> dict[str, str]:
        return {"event": str(chunk["type"]), "data": json_data(chunk)}

    def failure(self, error: GatewayError) -> Json:
        return self._numbered([{"type": "error", "code": error.code or error.error_type,
                                "message": error.message, "param": error.param}])[0]

    def done(self) -> dict[str, str] | None:
        return None  # the Responses stream ends with its response.completed event
