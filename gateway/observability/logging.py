"""Structured JSON logs (python-json-logger) that carry the current request's id, or short
human lines on a terminal (``serve --log-format``).

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


HUMAN = "%(asctime)s %(levelname)-7s %(message)s"
# Libraries whose INFO lines say nothing an operator acts on (Alembic's plugin and migration
# chatter, vLLM's import notes in the gateway's process, httpx's line per call to a replica
# or upstream, which the request's own "request finished" line already covers and which
# cost a JSON record per request on the hot path): WARNING and above unless the level asked
# for is DEBUG. vLLM's engine processes log through vLLM's own configuration
# (VLLM_LOGGING_LEVEL, which `serve` sets to WARNING on a terminal).
CHATTY = ("alembic", "vllm", "httpx", "httpcore")


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
        formatter = {"format": HUMAN, "datefmt": "%H:%M:%S"}
    handler = {"class": "logging.StreamHandler", "formatter": "main",
               "filters": ["request_id"], "stream": "ext://sys.stderr"}
    quiet = {"handlers": ["default"], "level": level, "propagate": False}
    chatty = {name: {"level": level if level == "DEBUG" else "WARNING"} for name in CHATTY}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"main": formatter},
        "handlers": {"default": handler},
        "loggers": {"uvicorn": quiet, "uvicorn.error": {"level": level},
                    "uvicorn.access": quiet, "llm_gateway": quiet, **chatty},
        "root": {"handlers": ["default"], "level": level},
    }
