"""A batch's input file: one request per line, validated before anything runs.

Each line is ``{"custom_id", "method": "POST", "url": <the batch's endpoint>, "body"}``;
custom ids are unique, and a line is no longer than a request body may be
(``limits.max_body_bytes``: checked on the bytes, before the line is decoded, so a huge
line is never parsed, here or on a worker). Every mistake is reported with its line
number, in OpenAI's ``errors`` shape, and a batch with any mistake fails without running
a line (as OpenAI's validation does).

The file is read in pieces (``InputParser.feed``): the caller runs each piece's parse in
a thread, off the event loop, and stores the valid lines as they come, so neither the
file nor its lines are ever held whole in memory: the part of an over-long line past
the limit is skipped, not kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.openai.json_bounds import breach

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
MAX_ERRORS = 100


@dataclass(frozen=True)
class InputLine:
    custom_id: str
    body: dict[str, Any]

    def __post_init__(self) -> None:
        if not self.custom_id or len(self.custom_id) > 512:
            raise ValueError("custom_id must have 1 to 512 characters")


def _error(code: str, message: str, line: int | None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": None, "line": line}


def _check(item: Any, endpoint: str) -> tuple[InputLine | None, str | None]:
    """The parsed line, or (None, why) in the form ``code: message``."""
    if not isinstance(item, dict):
        return None, "invalid_json_line: each line must be a JSON object"
    custom_id, body = item.get("custom_id"), item.get("body")
    if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= 512:
        return None, "missing_custom_id: custom_id must be a string of 1 to 512 characters"
    if item.get("method") != "POST":
        return None, "invalid_method: method must be POST"
    if item.get("url") != endpoint:
        return None, f"mismatched_url: url must be the batch's endpoint {endpoint}"
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return None, "invalid_body: body must be an object naming a model"
    return InputLine(custom_id, body), None


def _decode(raw: bytes, max_depth: int) -> tuple[Any, str | None]:
    """(the line's JSON value, None) or (None, why). The request body inside the line is
    held to the bounds of a request body sent over HTTP (``json_bounds``: nesting, NaN,
    lone surrogates) before anything parses it: the line wraps it one level deeper."""
    if (refused := breach(raw, max_depth + 1)) is not None:
        where = f" (in {refused.param})" if refused.param else ""
        return None, f"invalid_json_line: {refused.message}{where}"
    try:
        return json.loads(raw.decode("utf-8")), None
    except UnicodeDecodeError:
        return None, "invalid_encoding: the file must be UTF-8 JSONL"
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return None, "invalid_json_line: this line is not valid JSON"


class InputParser:
    """Feed the file's bytes in order; each ``feed`` returns the lines it completed.

    Once any line is wrong the batch will fail, so later valid lines are no longer
    returned (only checked, for the error list, which keeps the first ``MAX_ERRORS``)."""

    def __init__(self, endpoint: str, max_lines: int, max_line_bytes: int,
                 max_depth: int) -> None:
        if endpoint not in ENDPOINTS or min(max_lines, max_line_bytes, max_depth) < 1:
            raise ValueError("an input parser needs a batch endpoint, max_lines >= 1, "
                             "max_line_bytes >= 1 and max_depth >= 1")
        self.endpoint, self.max_lines, self.max_line_bytes = endpoint, max_lines, max_line_bytes
        self.max_depth = max_depth  # a request body's nesting bound (limits.max_json_depth)
        self.errors: list[dict[str, Any]] = []
        self.count = 0  # valid lines so far
        self._number = 0
        self._rest = b""
        self._seen: set[str] = set()
        self._too_many = False
        self._skipping = False  # inside an over-long line, already reported

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def feed(self, piece: bytes) -> list[InputLine]:
        if self._skipping:  # the rest of an over-long line, up to its end
            end = piece.find(b"\n")
            if end < 0:
                return []
            piece, self._skipping = piece[end + 1:], False
        raws = (self._rest + piece).split(b"\n")  # a newline byte never sits inside UTF-8
        self._rest = raws.pop()
        found = self._lines(raws)
        if len(self._rest) > self.max_line_bytes:  # an unfinished line already too long
            self._number += 1
            self._fail(self._too_long(), self._number)
            self._rest, self._skipping = b"", True
        return [] if self.failed else found

    def finish(self) -> list[InputLine]:
        tail, self._rest, self._skipping = self._rest, b"", False
        found = self._lines([tail]) if tail else []
        if not self.count and not self.errors:
            self._fail("empty_file: the input file has no requests", None)
        return [] if self.failed else found

    def _lines(self, raws: list[bytes]) -> list[InputLine]:
        found = []
        for raw in raws:
            self._number += 1
            line = self._one(raw)
            if line is not None:
                found.append(line)
        return [] if self.failed else found

    def _too_long(self) -> str:
        return (f"request_too_large: this line has more than {self.max_line_bytes} bytes, "
                "the limit on a request body")

    def _one(self, raw: bytes) -> InputLine | None:
        if len(raw) > self.max_line_bytes:
            self._fail(self._too_long(), self._number)
            return None
        if not raw.strip():
            return None
        item, problem = _decode(raw, self.max_depth)
        line = None
        if problem is None:
            line, problem = _check(item, self.endpoint)
        if line is not None and line.custom_id in self._seen:
            problem = f"duplicate_custom_id: {line.custom_id!r} appears twice"
        if line is None or problem is not None:
            self._fail(problem or "invalid_json_line: ?", self._number)
            return None
        self._seen.add(line.custom_id)
        self.count += 1
        if self.count > self.max_lines and not self._too_many:
            self._too_many = True
            self._fail(f"too_many_requests: at most {self.max_lines} requests per batch", None)
        return line

    def _fail(self, problem: str, line: int | None) -> None:
        if len(self.errors) < MAX_ERRORS:
            code, _, message = problem.partition(": ")
            self.errors.append(_error(code, message, line))
