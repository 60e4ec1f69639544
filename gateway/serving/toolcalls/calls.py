"""Tool calls as the formatter sees them, whole or in streamed pieces."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text

    def __post_init__(self) -> None:
        if not self.id or not self.name:
            raise ValueError("a tool call has an id and a function name")


@dataclass(frozen=True)
class CallDelta:
    """A streamed piece of call ``index``: its id and name once, then arguments in pieces."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError("a call index is >= 0")
        if (self.id is None) != (self.name is None):
            raise ValueError("a call's first piece carries both its id and its name")


@dataclass(frozen=True)
class Piece:
    """What one streamed step shows: plain text, tool-call pieces, or both."""

    content: str = ""
    calls: tuple[CallDelta, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.content and not self.calls


NOTHING = Piece()


@dataclass(frozen=True)
class Extracted:
    """A whole answer read: the text left for ``content`` and the calls."""

    content: str | None
    calls: tuple[ToolCall, ...]


class CallStream(Protocol):
    """Reads one choice's streamed text; one instance per choice."""

    def feed(self, text: str, token_ids: Sequence[int]) -> Piece: ...

    def end(self) -> Piece: ...

    @property
    def called(self) -> bool: ...


def assemble(pieces: Sequence[Piece]) -> Extracted:
    """The whole answer a stream of pieces spelled out (the non-streamed response)."""
    content = "".join(p.content for p in pieces)
    ids: dict[int, str] = {}
    names: dict[int, str] = {}
    arguments: dict[int, list[str]] = {}
    for piece in pieces:
        for call in piece.calls:
            if call.id is not None and call.name is not None:
                ids[call.index], names[call.index] = call.id, call.name
            arguments.setdefault(call.index, []).append(call.arguments)
    calls = tuple(ToolCall(ids[i], names[i], "".join(arguments.get(i, [])))
                  for i in sorted(ids))
    return Extracted(content or None, calls)
