"""A line's entry in its batch's output or error file, in OpenAI's shapes.

A request that ran and got an answer, or an error status of its own (a 400, a 401), is
``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error": null}``;
a request that could not be run to an answer (its attempts ran out) has no response:
``{"id", "custom_id", "response": null, "error": {"code", "message"}}``.
"""

from __future__ import annotations

import secrets
from typing import Any


def _line_id() -> str:
    return f"batch_req_{secrets.token_hex(12)}"


def response_line(custom_id: str, request_id: str, status: int,
                  body: dict[str, Any]) -> dict[str, Any]:
    return {"id": _line_id(), "custom_id": custom_id,
            "response": {"status_code": status, "request_id": request_id, "body": body},
            "error": None}


def error_line(custom_id: str, code: str, message: str) -> dict[str, Any]:
    return {"id": _line_id(), "custom_id": custom_id, "response": None,
            "error": {"code": code, "message": message}}
