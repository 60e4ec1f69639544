"""Tool calls the structured-output constraint forced (a named or a required tool choice).

Named: the whole text is the arguments object of the one named function. Required: the
text is a JSON list of ``{"name": ..., "parameters": {...}}`` objects, read incrementally
by a small JSON scanner so that each call's name is sent once it is complete and its
arguments stream as the exact text the engine generated (the pieces join to the whole).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.serving.toolcalls.calls import NOTHING, CallDelta, Piece, new_call_id


class NamedStream:
    """Every generated character is the named function's arguments."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._started = False

    @property
    def called(self) -> bool:
        return self._started

    def feed(self, text: str, token_ids: Sequence[int]) -> Piece:
        del token_ids
        if not self._started:
            text = text.lstrip()
            if not text:
                return NOTHING
            self._started = True
            return Piece(calls=(CallDelta(0, new_call_id(), self._name, text),))
        return Piece(calls=(CallDelta(0, arguments=text),)) if text else NOTHING

    def end(self) -> Piece:
        return NOTHING


@dataclass
class _Scan:
    """Where the scanner stands in ``[{"name": "...", "parameters": {...}}, ...]``."""

    depth: int = 0
    in_string: bool = False
    escaped: bool = False
    item: int = -1  # index of the call object being read
    key: list[str] = field(default_factory=list)  # the depth-2 key being read
    last_key: str | None = None
    after_colon: bool = False
    name_raw: list[str] | None = None  # the name string's raw characters, while read
    in_params: bool = False
    params_depth: int = 0


class RequiredStream:
    """Reads the list of calls as it is generated."""

    def __init__(self) -> None:
        self._s = _Scan()
        self._named: set[int] = set()
        self._pending: dict[int, str] = {}  # arguments read before their call's name

    @property
    def called(self) -> bool:
        return bool(self._named)

    def feed(self, text: str, token_ids: Sequence[int]) -> Piece:
        del token_ids
        out: list[CallDelta] = []
        arguments: list[str] = []
        for char in text:
            self._step(char, out, arguments)
        self._flush(out, arguments)
        return Piece(calls=tuple(out)) if out else NOTHING

    def end(self) -> Piece:
        return NOTHING

    def _flush(self, out: list[CallDelta], arguments: list[str]) -> None:
        """Arguments read so far go out once their call is named (held until then)."""
        if not arguments:
            return
        text, item = "".join(arguments), self._s.item
        arguments.clear()
        if item in self._named:
            out.append(CallDelta(item, arguments=text))
        else:
            self._pending[item] = self._pending.get(item, "") + text

    def _step(self, char: str, out: list[CallDelta], arguments: list[str]) -> None:
        s = self._s
        if s.in_params:
            arguments.append(char)
            self._track_params(char)
            if not s.in_params:  # the arguments object closed: they belong to this call
                self._flush(out, arguments)
            return
        if s.in_string:
            self._string_char(char, out, arguments)
            return
        if char == '"':
            s.in_string = True
            if s.depth == 2 and not s.after_colon:
                s.key = []
            elif s.depth == 2 and s.last_key == "name":
                s.name_raw = []
        elif char in "[{":
            self._open(char, arguments)
        elif char in "]}":
            s.depth -= 1
        elif char == ":" and s.depth == 2:
            s.after_colon = True
        elif char == "," and s.depth == 2:
            s.after_colon, s.last_key = False, None

    def _open(self, char: str, arguments: list[str]) -> None:
        s = self._s
        if s.depth == 1 and char == "{":
            s.item += 1
            s.after_colon, s.last_key = False, None
        elif s.depth == 2 and s.after_colon and s.last_key == "parameters":
            s.in_params, s.params_depth = True, 1
            arguments.append(char)
            return
        s.depth += 1

    def _track_params(self, char: str) -> None:
        s = self._s
        if s.escaped:
            s.escaped = False
        elif s.in_string:
            s.escaped = char == "\\"
            s.in_string = char != '"'
        elif char == '"':
            s.in_string = True
        elif char in "[{":
            s.params_depth += 1
        elif char in "]}":
            s.params_depth -= 1
            if s.params_depth == 0:
                s.in_params, s.after_colon, s.last_key = False, False, None

    def _string_char(self, char: str, out: list[CallDelta], arguments: list[str]) -> None:
        s = self._s
        if char == '"' and not s.escaped:
            s.in_string = False
            if s.name_raw is not None:
                self._named_call(json.loads('"' + "".join(s.name_raw) + '"'), out, arguments)
                s.name_raw, s.after_colon, s.last_key = None, False, "name"
            elif s.depth == 2 and not s.after_colon:
                s.last_key = "".join(s.key)
            return
        s.escaped = char == "\\" and not s.escaped
        if s.name_raw is not None:
            s.name_raw.append(char)
        elif s.depth == 2 and not s.after_colon:
            s.key.append(char)

    def _named_call(self, name: str, out: list[CallDelta], arguments: list[str]) -> None:
        item = self._s.item
        self._flush(out, arguments)
        out.append(CallDelta(item, new_call_id(), name))
        self._named.add(item)
        if pending := self._pending.pop(item, ""):
            out.append(CallDelta(item, arguments=pending))
