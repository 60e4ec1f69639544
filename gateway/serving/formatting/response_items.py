"""Output items of the Responses API, built whole or event by event while a run streams.

``ItemStream`` turns the pieces a choice yields (text, tool-call pieces) into the official
event sequence: ``response.output_item.added``, ``response.content_part.added``,
``response.output_text.delta`` ... ``.done``, and for function calls
``response.function_call_arguments.delta`` ... ``.done``, and for a reasoning model's span a
``reasoning`` item with ``response.reasoning_text.delta`` ... ``.done``; it keeps the
finished items, so
the final ``response.completed`` carries exactly what was streamed.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.serving.toolcalls.calls import CallDelta, Extracted, Piece

Json = dict[str, Any]


def item_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


def text_part(text: str) -> Json:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item: str, text: str, status: str) -> Json:
    return {"type": "message", "id": item, "status": status, "role": "assistant",
            "content": [text_part(text)] if status != "in_progress" else []}


def call_item(item: str, call_id: str, name: str, arguments: str, status: str) -> Json:
    return {"type": "function_call", "id": item, "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def reasoning_part(text: str) -> Json:
    return {"type": "reasoning_text", "text": text}


def reasoning_item(item: str, text: str, status: str) -> Json:
    return {"type": "reasoning", "id": item, "status": status, "summary": [],
            "content": [reasoning_part(text)] if status != "in_progress" else []}


def whole_items(read: Extracted, status: str, reasoning: str | None = None) -> list[Json]:
    """The output items of a whole answer: its reasoning (if any), its text (if any), then
    its calls."""
    items = [] if reasoning is None else [reasoning_item(item_id("rs"), reasoning, status)]
    if read.content or not read.calls:
        items.append(message_item(item_id("msg"), read.content or "", status))
    items += [call_item(item_id("fc"), c.id, c.name, c.arguments, status) for c in read.calls]
    return items


@dataclass
class _Open:
    """An output item being streamed."""

    index: int
    item: str
    kind: str  # "message", "function_call" or "reasoning"
    text: list[str] = field(default_factory=list)
    call_id: str = ""
    name: str = ""


class ItemStream:
    def __init__(self) -> None:
        self.items: list[Json] = []  # finished items, in output order
        self._open: _Open | None = None
        self._calls: dict[int, _Open] = {}  # by call index
        self._next_index = 0

    def reason(self, text: str) -> list[Json]:
        """A piece of the reasoning span: one reasoning item, before the answer's."""
        events: list[Json] = []
        if self._open is not None and self._open.kind != "reasoning":
            events += self._finish("completed")
        if self._open is None:
            self._open = self._start("reasoning", "rs")
            events += [self._added(reasoning_item(self._open.item, "", "in_progress")),
                       {"type": "response.content_part.added", **self._where(),
                        "part": reasoning_part("")}]
        self._open.text.append(text)
        events.append({"type": "response.reasoning_text.delta", **self._where(),
                       "delta": text})
        return events

    def feed(self, piece: Piece) -> list[Json]:
        events: list[Json] = []
        if piece.content:
            events += self._text(piece.content)
        for call in piece.calls:
            events += self._call(call)
        return events

    def close(self, status: str) -> list[Json]:
        """Finish every open item (the run ended)."""
        events = self._finish(status) if self._open is not None else []
        if not self.items and not events:  # an empty answer is still one message
            events += self._text("") + self._finish(status)
        return events

    def _start(self, kind: str, prefix: str, **extra: str) -> _Open:
        opened = _Open(self._next_index, item_id(prefix), kind, **extra)  # type: ignore[arg-type]
        self._next_index += 1
        return opened

    def _text(self, text: str) -> list[Json]:
        events: list[Json] = []
        if self._open is not None and self._open.kind != "message":
            events += self._finish("completed")
        if self._open is None:
            self._open = self._start("message", "msg")
            events += [self._added(message_item(self._open.item, "", "in_progress")),
                       {"type": "response.content_part.added", **self._where(),
                        "part": text_part("")}]
        self._open.text.append(text)
        if text:
            events.append({"type": "response.output_text.delta", **self._where(),
                           "delta": text, "logprobs": []})
        return events

    def _call(self, call: CallDelta) -> list[Json]:
        events: list[Json] = []
        if call.name is not None and call.id is not None:
            if self._open is not None:
                events += self._finish("completed")
            self._open = self._start("function_call", "fc", call_id=call.id, name=call.name)
            self._calls[call.index] = self._open
            events.append(self._added(call_item(self._open.item, call.id, call.name, "",
                                                "in_progress")))
        opened = self._calls.get(call.index)
        if opened is not None and call.arguments:
            opened.text.append(call.arguments)
            events.append({"type": "response.function_call_arguments.delta",
                           "item_id": opened.item, "output_index": opened.index,
                           "delta": call.arguments})
        return events

    def _added(self, item: Json) -> Json:
        assert self._open is not None
        return {"type": "response.output_item.added", "output_index": self._open.index,
                "item": item}

    def _where(self) -> Json:
        assert self._open is not None
        return {"item_id": self._open.item, "output_index": self._open.index,
                "content_index": 0}

    def _finish(self, status: str) -> list[Json]:
        opened, self._open = self._open, None
        assert opened is not None
        text = "".join(opened.text)
        if opened.kind == "reasoning":
            where = {"item_id": opened.item, "output_index": opened.index, "content_index": 0}
            item = reasoning_item(opened.item, text, status)
            events = [{"type": "response.reasoning_text.done", **where, "text": text},
                      {"type": "response.content_part.done", **where,
                       "part": reasoning_part(text)}]
        elif opened.kind == "message":
            where = {"item_id": opened.item, "output_index": opened.index, "content_index": 0}
            item = message_item(opened.item, text, status)
            events = [{"type": "response.output_text.done", **where, "text": text,
                       "logprobs": []},
                      {"type": "response.content_part.done", **where, "part": text_part(text)}]
        else:
            item = call_item(opened.item, opened.call_id, opened.name, text, status)
            events = [{"type": "response.function_call_arguments.done", "item_id": opened.item,
                       "output_index": opened.index, "name": opened.name, "arguments": text}]
        self.items.append(item)
        return [*events, {"type": "response.output_item.done", "output_index": opened.index,
                          "item": item}]


def numbered(events: Sequence[Json], start: int) -> list[Json]:
    return [{**event, "sequence_number": start + i} for i, event in enumerate(events)]
