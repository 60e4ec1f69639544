"""A batch's input file: one request per line, validated before anything runs.

Each line is ``{"custom_id", "method": "POST", "url": <the batch's endpoint>, "body"}``;
custom ids are unique. Every mistake is reported with its line number, in OpenAI's
``errors`` shape, and a batch with any mistake fails without running a line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ENDPOINTS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")


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


def parse_input(content: bytes, endpoint: str,
                max_lines: int) -> tuple[list[InputLine], list[dict[str, Any]]]:
    """(lines, errors): errors is empty when the file may run."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return [], [_error("invalid_encoding", "the file must be UTF-8 JSONL", None)]
    lines: list[InputLine] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line, problem = _check(json.loads(raw), endpoint)
        except json.JSONDecodeError:
            line, problem = None, "invalid_json_line: this line is not valid JSON"
        if line is not None and line.custom_id in seen:
            problem = f"duplicate_custom_id: {line.custom_id!r} appears twice"
        if line is None or problem is not None:
            code, _, message = (problem or "invalid_json_line: ?").partition(": ")
            errors.append(_error(code, message, number))
            continue
        seen.add(line.custom_id)
        lines.append(line)
    if not lines and not errors:
        errors.append(_error("empty_file", "the input file has no requests", None))
    if len(lines) > max_lines:
        errors.append(_error("too_many_requests", f"at most {max_lines} requests per batch",
                             None))
    return lines, errors[:100]
