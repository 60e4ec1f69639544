"""A batch's input file: one request per line, validated before anything runs.

Each line is ``{"custom_id", "method": "POST", "url": <the batch's endpoint>, "body"}``;
custom ids are unique. Every mistake is reported with its line number, in OpenAI's
``errors`` shape, and a batch with any mistake fails without running a line.

The file is read in pieces (``InputParser.feed``): the caller runs each piece's parse in
a thread, off the event loop, and stores the valid lines as they come, so neither the
file nor its lines are ever held whole in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

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


def _decode(raw: bytes) -> tuple[Any, str | None]:
    """(the line's JSON value, None) or (None, why)."""
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

    def __init__(self, endpoint: str, max_lines: int) -> None:
        if endpoint not in ENDPOINTS or max_lines < 1:
            raise ValueError("an input parser needs a batch endpoint and max_lines >= 1")
        self.endpoint, self.max_lines = endpoint, max_lines
        self.errors: list[dict[str, Any]] = []
        self.count = 0  # valid lines so far
        self._number = 0
        self._rest = b""
        self._seen: set[str] = set()
        self._too_many = False

    @property
    def failed(self) -> bool:
        return bool(self.errors)

    def feed(self, piece: bytes) -> list[InputLine]:
        raws = (self._rest + piece).split(b"\n")  # a newline byte never sits inside UTF-8
        self._rest = raws.pop()
        return self._lines(raws)

    def finish(self) -> list[InputLine]:
        tail, self._rest = self._rest, b""
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

    def _one(self, raw: bytes) -> InputLine | None:
        if not raw.strip():
            return None
        item, problem = _decode(raw)
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
