"""Typed errors and their one mapping to the OpenAI error envelope.

Every failure a client can see leaves through ``install_error_handlers``:
``{"error": {"message", "type", "param", "code"}}`` with the right status code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import (
    EngineError,
    EngineRequestError,
    EngineUnavailableError,
    ModelNotPreparedError,
)
from gateway.metering.outage import is_database_outage

log = logging.getLogger("llm_gateway.errors")


class GatewayError(Exception):
    status_code = 500
    error_type = "server_error"
    default_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.retry_after = retry_after

    def envelope(self) -> dict[str, Any]:
        return error_envelope(self.message, self.error_type, self.param, self.code)

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"retry-after": str(max(1, int(self.retry_after + 0.999)))}


class InvalidRequestError(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthError(InvalidRequestError):
    default_code = "context_length_exceeded"


class UnsupportedParameterError(InvalidRequestError):
    default_code = "unsupported_parameter"


class ChatTemplateError(InvalidRequestError):
    """The model's chat template cannot render the request's messages."""

    default_code = "invalid_chat_template_input"


class BodyRefusedError(StarletteHTTPException):
    """A request body refused while it is read, before anything parses it: FastAPI passes
    HTTP exceptions from body reading through, so the typed error travels inside one."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.status_code, error.message)
        self.error = error


class RequestTooLargeError(InvalidRequestError):
    status_code = 413
    default_code = "request_too_large"


class ModelNotFoundError(InvalidRequestError):
    status_code = 404
    default_code = "model_not_found"


class NotFoundError(InvalidRequestError):
    status_code = 404
    default_code = "not_found"


class ConflictError(InvalidRequestError):
    """The thing to create exists already (a tenant's name)."""

    status_code = 409
    default_code = "already_exists"


class AuthenticationError(GatewayError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class PermissionDeniedError(GatewayError):
    status_code = 403
    error_type = "permission_error"
    default_code = "permission_denied"


class RateLimitError(GatewayError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class BudgetExceededError(RateLimitError):
    error_type = "insufficient_quota"
    default_code = "insufficient_quota"


class ServiceUnavailableError(GatewayError):
    status_code = 503
    error_type = "service_unavailable"
    default_code = "engine_unavailable"


class UpstreamError(GatewayError):
    """An external upstream failed, timed out or rejected the gateway's own credentials."""

    status_code = 502
    default_code = "upstream_error"


class UpstreamRejectedError(GatewayError):
    """The upstream refused the request itself (a 4xx): relayed with its status."""

    error_type = "invalid_request_error"

    def __init__(self, status_code: int, message: str, *, error_type: str | None = None,
                 param: str | None = None, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, param=param, code=code, retry_after=retry_after)
        self.status_code = status_code
        self.error_type = error_type or self.error_type


class MeteringUnavailableError(ServiceUnavailableError):
    """The ledger database cannot be reached: the request is refused before dispatch."""

    default_code = "metering_unavailable"


class LimiterUnavailableError(ServiceUnavailableError):
    """The shared limiter (Redis) cannot be reached in time: a request with limits is
    refused before dispatch (``metering.redis_fail_open`` lets it through instead)."""

    default_code = "limiter_unavailable"


def error_envelope(
    message: str, error_type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": _encodable(message), "type": error_type,
                      "param": None if param is None else _encodable(param), "code": code}}


def _encodable(text: str) -> str:
    """Client text echoed into an error (a field name, a schema path) may hold lone
    surrogates, which no UTF-8 response can carry: they are written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def as_gateway_error(exc: BaseException) -> GatewayError:
    """Map any exception to the error a client should see."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, EngineUnavailableError | ModelNotPreparedError):
        # The detail names replicas, addresses and paths: logged, never sent.
        log.warning("engine unavailable: %s", exc)
        return ServiceUnavailableError("The model's engine is unavailable; retry later.",
                                       retry_after=5)
    if isinstance(exc, EngineRequestError):
        return InvalidRequestError(str(exc), param=exc.param)
    if isinstance(exc, RecursionError):  # a request nested past what the code can walk
        log.warning("request too deeply nested: %r", exc)
        return InvalidRequestError("The request is nested too deeply to be processed.")
    if is_database_outage(exc):  # any route: the ledger database down is not our bug
        log.warning("metering database unavailable: %r", exc)
        return MeteringUnavailableError("The metering database is unavailable; retry later.",
                                        retry_after=5)
    return GatewayError("The server had an error while processing your request.")


def _param_from_loc(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or None


# Told of every error response (metrics count them); set by ``install_error_handlers``.
ErrorListener = Callable[[Request, GatewayError], None]


def _json(request: Request, error: GatewayError) -> JSONResponse:
    listener: ErrorListener | None = getattr(request.app.state, "error_listener", None)
    if listener is not None:
        listener(request, error)
    return JSONResponse(error.envelope(), status_code=error.status_code, headers=error.headers())


async def _on_gateway_error(request: Request, exc: Exception) -> JSONResponse:
    error = as_gateway_error(exc)
    expected = isinstance(exc, GatewayError | EngineUnavailableError) or is_database_outage(exc)
    if error.status_code >= 500 and not expected:
        log.exception("unhandled error", exc_info=exc)
    return _json(request, error)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = tuple(first.get("loc", ()))
    message = str(first.get("msg", "Invalid request"))
    if first.get("type") == "json_invalid":
        message, loc = "We could not parse the JSON body of your request.", ()
    elif first.get("type") == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {loc[-1] if loc else ''}"
    param = _param_from_loc(loc)
    text = f"{message} (param: {param})" if param and "argument" not in message else message
    return _json(request, InvalidRequestError(text, param=param))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, BodyRefusedError):
        return _json(request, exc.error)
    if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):  # json.loads
        return _json(request, as_gateway_error(exc.__cause__))
    kinds: dict[int, type[GatewayError]] = {404: NotFoundError, 413: RequestTooLargeError}
    error = kinds.get(exc.status_code, InvalidRequestError)(str(exc.detail))
    error.status_code = exc.status_code
    return _json(request, error)


def install_error_handlers(app: FastAPI, on_error: ErrorListener | None = None) -> None:
    app.state.error_listener = on_error
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(GatewayError, _on_gateway_error)
    app.add_exception_handler(EngineError, _on_gateway_error)
    # Anything else is our bug: a 500 envelope (Starlette logs and re-raises it after sending).
    app.add_exception_handler(Exception, _on_gateway_error)
