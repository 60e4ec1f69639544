"""Bounds on a JSON text, checked on its bytes before anything parses it.

Python's ``json`` recurses once per nesting level (a body nested a few thousand levels deep
raises ``RecursionError``; one nested a few hundred deep parses, then makes recursive code
further on, ``jsonschema`` or ``json.dumps``, run out of stack), and it accepts the
literals ``NaN``, ``Infinity`` and ``-Infinity``, which JSON does not have. ``breach``
finds either in time linear in the text, without recursion and in C-speed passes: escapes
deleted, strings cut out by splitting at the quotes, then the innermost bracket pairs
deleted level by level. Only a refused text is tokenised again, to name the top-level
field at fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_OPEN, _CLOSE = b"[{", b"]}"
# Opening brackets to 1, closing ones to 2, every other byte deleted: a pair is b"\x01\x02".
_STEPS = bytes.maketrans(_OPEN + _CLOSE, b"\x01\x01\x02\x02")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _OPEN + _CLOSE)
_PAIR = b"\x01\x02"
_NON_FINITE = (b"NaN", b"Infinity")
# Tokens of a text without escapes: strings, brackets, colons, non-finite literals.
_TOKEN = re.compile(rb'"[^"]*"|[\[\]{}:]|NaN|Infinity')
# A ``\uXXXX`` escape of half a surrogate pair without its other half: Python decodes it
# to a string no UTF-8 encoder (tokenizer, engine transport, response) accepts.
_LONE_SURROGATE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")


@dataclass(frozen=True)
class Breach:
    """Why a JSON text is refused, and the top-level field it happened in (None: the
    text's own top level)."""

    message: str
    param: str | None


def breach(raw: bytes | str, max_depth: int) -> Breach | None:
    """Why ``raw`` must not be parsed, or None: nested deeper than ``max_depth``, or a
    ``NaN``/``Infinity`` literal outside strings."""
    data = _unescaped(raw.encode() if isinstance(raw, str) else raw)
    skeleton = b"".join(data.split(b'"')[::2])  # what lies outside strings
    if _nesting(skeleton, max_depth) > max_depth:
        return Breach(f"JSON nests deeper than {max_depth} levels",
                      _field_at(data, max_depth))
    if any(literal in skeleton for literal in _NON_FINITE):
        return Breach("NaN and Infinity are not JSON numbers", _field_at(data, None))
    if b"\\u" in data and (lone := _LONE_SURROGATE.search(data)) is not None:
        return Breach("a \\u escape names half a UTF-16 surrogate pair, which is no "
                      "character", _field_at(data, None, lone.start()))
    return None


def _unescaped(data: bytes) -> bytes:
    """``data`` without its escape sequences' backslashes and escaped quotes (escapes live
    in strings only, so what is left splits at the quotes into strings and the rest)."""
    return data.replace(b"\\\\", b"").replace(b'\\"', b"")


def _nesting(skeleton: bytes, limit: int) -> int:
    """How deep arrays and objects nest in a text without its strings (0: a scalar),
    counted up to ``limit + 1``: each pass deletes the innermost bracket pairs (a C-speed
    ``bytes.replace``) unless a run of ``limit + 1`` opening ones is left; brackets left
    unpaired count as levels too."""
    steps, passes, run = skeleton.translate(_STEPS, _NOT_BRACKETS), 0, _PAIR[:1] * (limit + 1)
    while steps and passes <= limit:
        if run in steps:
            return passes + limit + 1
        inner = steps.replace(_PAIR, b"")
        if len(inner) == len(steps):
            break
        steps, passes = inner, passes + 1
    return passes + steps.count(_PAIR[:1])


def _field_at(data: bytes, max_depth: int | None, offset: int | None = None) -> str | None:
    """The top-level key of the first place ``data`` (unescaped) nests past ``max_depth``,
    or holds the byte at ``offset`` (a top-level key there names itself), or, with
    neither, holds a non-finite literal."""
    level, key, previous, in_object = 0, None, b"", data.lstrip().startswith(b"{")
    for match in _TOKEN.finditer(data):
        token = match.group()
        if offset is not None and match.end() > offset:
            is_key = in_object and level == 1 and token[:1] == b'"' and previous != b":"
            return _text(token) if is_key else key
        if token in (b"[", b"{"):
            level += 1
            if max_depth is not None and level > max_depth:
                return key
        elif token in (b"]", b"}"):
            level -= 1
        elif token == b":":
            key = _text(previous) if level == 1 else key
        elif token in _NON_FINITE and max_depth is None and offset is None:
            return key
        previous = token
    return key


def _text(token: bytes) -> str:
    """A string token's text as sent (escapes left as they are, so always valid UTF-8)."""
    return token[1:-1].decode(errors="replace")
