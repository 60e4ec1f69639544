"""Errors raised by engines; the gateway maps them to HTTP in one place."""

from __future__ import annotations

import re


class EngineError(Exception):
    """Base class for engine failures."""


class ModelNotPreparedError(EngineError):
    """The model's files are missing or were never prepared."""


class EngineUnavailableError(EngineError):
    """The engine is not ready, has died, or stalled; the request can be retried."""


class EngineRequestError(EngineError):
    """The engine rejected one request (bad parameters for this model); ``param`` names the
    offending request parameter when the engine said which. The message goes to the client:
    the C++ source locations vLLM's grammar backend writes into its errors are cut out."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(_SOURCE_LOCATION.sub("", message))
        self.param = param


# "[06:11:15] /project/cpp/regex_converter.cc:83: " (xgrammar's log prefix)
_SOURCE_LOCATION = re.compile(r"\[\d{2}:\d{2}:\d{2}\] \S+\.(?:cc|cpp|h|hpp):\d+: ")


class UnsupportedQuantizationError(EngineError):
    """This machine cannot run the model's quantization scheme (checked before vLLM starts)."""


class QuantizationError(EngineError):
    """Producing a quantized variant failed."""
