"""uvicorn's h11 protocol with slow-client deadlines (``cli/slow_clients.py``).

The slim gateway image has no httptools, so uvicorn serves with h11 there. h11 parses a
whole batch of bytes at once; after each batch the guard reads where the client's side of the
connection stands: ``IDLE`` (a request begun, headers incomplete), ``SEND_BODY``, or done.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from cli.slow_clients import (
    ConnectionGuard,
    PendingConnections,
    Phase,
    close_slow,
    unread_bytes,
)


class GuardedH11Protocol(H11Protocol):
    pending: ClassVar[PendingConnections]  # per listener: set by cli.guarded_http

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        self.guard = ConnectionGuard(self, address, self.pending, self.loop,
                                     lambda: self.flow.read_paused)
        self.guard.opened()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.closed()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.IDLE:  # bytes of a request, not yet its whole head
            self.guard.request_started()
        elif state is h11.SEND_BODY:
            if self.guard.phase is Phase.HEADERS:
                self.guard.headers_complete()
            else:
                self.guard.body_chunk()
        else:
            if self.guard.phase is Phase.HEADERS:
                self.guard.headers_complete()
            self.guard.message_complete()

    def bytes_waiting(self) -> bool:
        return unread_bytes(self.transport) > 0

    def slow_client(self, phase: Phase) -> None:
        answered = phase is Phase.BODY and self.cycle is not None and self.cycle.response_started
        if phase is Phase.BODY and self.cycle is not None:
            self.cycle.disconnected = True  # the app reads a disconnect, writes nothing more
        close_slow(self.transport, phase, answered)
