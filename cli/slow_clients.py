"""Slow clients: deadlines on a connection's headers and body, caps on connections still
sending their headers (slowloris).

uvicorn arms no timer before a request's headers are complete (its keep-alive timeout only
starts after a response), so a socket that sends half a request line and then nothing is held
open for ever, and counts against ``limit_concurrency``. A ``ConnectionGuard`` per connection
closes it when the request line and headers have not arrived ``header_timeout_s`` after the
connection (or, on a kept-alive connection, the request's first byte), or when a body goes
silent for ``body_timeout_s``. ``PendingConnections`` counts the connections still sending
headers. A connection whose bytes wait unread in the kernel is never the one closed to make
room at a cap: the loop is behind, not the client (a loaded 2-core box can leave a burst
unread for over a second); the header deadline itself stays strict. No connection is ever
refused for its address: many clients share one address behind
a proxy or NAT, and a burst of real connections is accepted before the loop reads any of them.
Past ``max_pending_per_client`` from one address, that address's oldest pending connection is
closed to make room once it has been sending headers for ``slow_after_s`` (younger ones are a
burst, not a flood); past ``max_pending`` in all, the oldest pending connection of the address
holding the most is closed, so a flood of slow sockets only ever costs its own sender. The
protocol classes that drive these are in ``cli/guarded_http.py``.
"""

from __future__ import annotations

import array
import asyncio
import dataclasses
import fcntl
import json
import termios
import time
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from gateway.errors import error_envelope


class Phase(Enum):
    HEADERS = "headers"  # the request line and headers are arriving
    BODY = "body"  # headers complete, the body is arriving
    IDLE = "idle"  # no request being received (being served, or kept alive)


@dataclasses.dataclass(frozen=True)
class SlowClientPolicy:
    header_timeout_s: float
    body_timeout_s: float
    max_pending: int  # connections still sending headers, all clients
    max_pending_per_client: int  # ... from one address; 0: no per-address cap
    slow_after_s: float = 5.0  # pending this long, a connection past its address's cap is slow

    def __post_init__(self) -> None:
        if self.header_timeout_s <= 0 or self.body_timeout_s <= 0 or self.slow_after_s < 0:
            raise ValueError("slow-client timeouts must be positive")
        if self.max_pending < 1 or self.max_pending_per_client < 0:
            raise ValueError("max_pending must be at least 1, max_pending_per_client >= 0")


class Closable(Protocol):
    def slow_client(self, phase: Phase) -> None:
        """Close the connection: it was too slow (or the oldest when room was needed)."""

    def bytes_waiting(self) -> bool:
        """Whether the kernel holds bytes of this connection that the loop has not read."""


def unread_bytes(transport: asyncio.BaseTransport) -> int:
    """Bytes received on ``transport``'s socket and not yet read (FIONREAD); 0 if unknown."""
    sock = transport.get_extra_info("socket")
    if sock is None or transport.is_closing():
        return 0
    count = array.array("i", [0])
    try:
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
    except OSError:
        return 0
    return count[0]


class PendingConnections:
    """The connections of one listener that are still sending their headers."""

    def __init__(self, policy: SlowClientPolicy,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._pending: dict[Closable, str] = {}  # insertion order: the oldest first
        self._per_address: dict[str, dict[Closable, float]] = {}  # the oldest first, when

    def __len__(self) -> int:
        return len(self._pending)

    def admit(self, connection: Closable, address: str) -> None:
        """A new connection from ``address``. Past that address's cap, its oldest pending
        connection is closed if it is slow; at the overall cap, the heaviest address's oldest."""
        cap = self.policy.max_pending_per_client
        mine = self._per_address.get(address, {})
        if cap and len(mine) >= cap:
            slow = self._slowest(mine, self._clock() - self.policy.slow_after_s)
            if slow is not None:
                self._close(slow)
        self.enter(connection, address)

    def enter(self, connection: Closable, address: str) -> None:
        while len(self._pending) >= self.policy.max_pending:
            heaviest = max(self._per_address.values(), key=len)
            victim = self._slowest(heaviest, float("inf"))
            self._close(victim if victim is not None else next(iter(heaviest)))
        if connection not in self._pending:
            self._pending[connection] = address
            self._per_address.setdefault(address, {})[connection] = self._clock()

    def leave(self, connection: Closable) -> None:
        address = self._pending.pop(connection, None)
        if address is None:
            return
        mine = self._per_address[address]
        del mine[connection]
        if not mine:
            del self._per_address[address]

    @staticmethod
    def _slowest(mine: dict[Closable, float], since: float) -> Closable | None:
        """The oldest of ``mine`` pending since ``since`` or before with nothing unread."""
        for connection, when in mine.items():
            if when > since:
                return None
            if not connection.bytes_waiting():
                return connection
        return None

    def _close(self, connection: Closable) -> None:
        self.leave(connection)
        connection.slow_client(Phase.HEADERS)


class ConnectionGuard:
    """One connection's deadlines and its place among the pending connections. The protocol
    reports what its parser saw; the guard calls ``connection.slow_client`` when time is up."""

    def __init__(self, connection: Closable, address: str, pending: PendingConnections,
                 loop: asyncio.AbstractEventLoop, reading_paused: Callable[[], bool]) -> None:
        self._connection, self._address, self._pending = connection, address, pending
        self._loop, self._reading_paused = loop, reading_paused
        self._policy = pending.policy
        self.phase = Phase.IDLE
        self._timer: asyncio.TimerHandle | None = None
        self._last_chunk = 0.0

    def opened(self) -> None:
        """The connection was made: its headers' deadline starts."""
        self._pending.admit(self._connection, self._address)
        self._start_headers()

    def request_started(self) -> None:
        """The first byte of a request on a kept-alive connection: its headers' deadline."""
        if self.phase is Phase.IDLE:
            self._pending.enter(self._connection, self._address)
            self._start_headers()

    def headers_complete(self) -> None:
        self._pending.leave(self._connection)
        self._cancel()
        self.phase = Phase.BODY
        self.body_chunk()

    def body_chunk(self) -> None:
        self._last_chunk = time.monotonic()
        if self._timer is None and self.phase is Phase.BODY:
            self._timer = self._loop.call_later(self._policy.body_timeout_s, self._body_due)

    def message_complete(self) -> None:
        self._cancel()
        self.phase = Phase.IDLE

    def closed(self) -> None:
        self._pending.leave(self._connection)
        self.message_complete()

    def _start_headers(self) -> None:
        self._cancel()
        self.phase = Phase.HEADERS
        self._timer = self._loop.call_later(self._policy.header_timeout_s, self._headers_due)

    def _headers_due(self) -> None:
        # Strict, unread bytes or not: a trickling client always has a byte in flight, and
        # putting its deadline off would let it hold the socket (and cost a timer per
        # socket every few hundred ms). Being behind by the whole deadline is not the loop.
        self._timer = None
        self._pending.leave(self._connection)
        self._connection.slow_client(Phase.HEADERS)

    def _body_due(self) -> None:
        # One timer per connection, moved on lazily: a chunk only records its time.
        self._timer = None
        silent = time.monotonic() - self._last_chunk
        if self._reading_paused():  # the app is not reading the body: not the client's fault
            self._last_chunk = time.monotonic()
            silent = 0.0
        if silent < self._policy.body_timeout_s:
            self._timer = self._loop.call_later(self._policy.body_timeout_s - silent,
                                                self._body_due)
            return
        self._connection.slow_client(Phase.BODY)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _response(status: bytes, message: str, code: str) -> bytes:
    body = json.dumps(error_envelope(message, "invalid_request_error", None, code)).encode()
    head = (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n")
    return head + body


TIMED_OUT: dict[Phase, bytes] = {
    Phase.HEADERS: _response(b"408 Request Timeout", "The request headers took too long.",
                             "request_timeout"),
    Phase.BODY: _response(b"408 Request Timeout", "The request body stopped arriving.",
                          "request_timeout"),
}


def close_slow(transport: asyncio.Transport, phase: Phase, answered: bool) -> None:
    """Close a slow connection, telling the client why unless a response already started."""
    if transport.is_closing():
        return
    if not answered:
        transport.write(TIMED_OUT[phase])
    transport.close()

