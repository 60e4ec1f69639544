"""Which exceptions mean "the ledger database cannot be reached right now".

Such a failure is not the request's fault and not our bug: before dispatch the request is
refused with a 503 (``metering_unavailable``, ``Retry-After``), a settlement is retried.
Checked against a real PostgreSQL stopped and restarted under load: a refused connection
surfaces as a bare ``ConnectionRefusedError`` (SQLAlchemy does not wrap errors raised while
connecting), a query cut by a shutdown as a ``DBAPIError`` whose connection was
invalidated, a server still starting as a ``DBAPIError`` wrapping asyncpg's
``CannotConnectNowError`` (SQLSTATE 57P03); a pool with no free connection within
``pool_timeout`` raises SQLAlchemy's ``TimeoutError``.
"""

from __future__ import annotations

from asyncpg.exceptions import (  # type: ignore[import-untyped]
    CannotConnectNowError,
    PostgresConnectionError,
    TooManyConnectionsError,
)
from asyncpg.exceptions import InterfaceError as AsyncpgInterfaceError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

_OUTAGES = (OperationalError, InterfaceError, PoolTimeoutError, OSError, TimeoutError,
            CannotConnectNowError, PostgresConnectionError, TooManyConnectionsError,
            AsyncpgInterfaceError)


# SQLSTATEs of a server going away or not taking connections: connection exceptions
# (class 08), shutdowns and "the database system is starting up" (57P01-57P03), too many
# connections (53300).
_OUTAGE_STATES = ("08", "57P01", "57P02", "57P03", "53300")


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc``, the driver error SQLAlchemy wraps, and what caused that (a few deep)."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(found) < 6 and current not in found:
        found.append(current)
        current = getattr(current, "orig", None) or current.__cause__
    return found


def is_database_outage(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is down, restarting, unreachable or saturated."""
    for cause in _causes(exc):
        if isinstance(cause, _OUTAGES):
            return True
        if isinstance(cause, DBAPIError) and cause.connection_invalidated:
            return True
        state = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if isinstance(state, str) and state.startswith(_OUTAGE_STATES):
            return True
    return False
