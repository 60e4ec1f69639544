"""Structured JSON logs (python-json-logger) that carry the current request's id.

``RequestIdMiddleware`` sets ``REQUEST_ID`` for each HTTP request; ``RequestIdFilter``
copies it onto every record logged while that request is handled (uvicorn's access
line included), unless the record already names one.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

REQUEST_ID: ContextVar[str | None] = ContextVar("llmgw_request_id", default=None)
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


def log_config(json_logs: bool, level: str = "INFO") -> dict[str, Any]:
    """A ``dictConfig`` for the gateway and uvicorn (``uvicorn.run(log_config=...)``)."""
    if json_logs:
        formatter: dict[str, Any] = {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FIELDS,
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "datefmt": "%Y-%m-%dT%H:%M:%S%z",
        }
    else:
        formatter = {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}
    handler = {"class": "logging.StreamHandler", "formatter": "main",
               "filters": ["request_id"], "stream": "ext://sys.stderr"}
    quiet = {"handlers": ["default"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"main": formatter},
        "handlers": {"default": handler},
        "loggers": {"uvicorn": quiet, "uvicorn.error": {"level": level},
                    "uvicorn.access": quiet, "llm_gateway": quiet},
        "root": {"handlers": ["default"], "level": level},
    }
