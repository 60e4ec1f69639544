"""uvicorn's httptools protocol with slow-client deadlines (``cli/slow_clients.py``).

httptools' parser calls back at each step of a request, so the guard follows them: a request
begins, its headers are complete, a body chunk arrives, the message is complete.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cli.slow_clients import (
    ConnectionGuard,
    PendingConnections,
    Phase,
    close_slow,
    unread_bytes,
)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
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

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.guard.request_started()

    def on_headers_complete(self) -> None:
        self.guard.headers_complete()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self.guard.body_chunk()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.guard.message_complete()

    def bytes_waiting(self) -> bool:
        return unread_bytes(self.transport) > 0

    def slow_client(self, phase: Phase) -> None:
        answered = phase is Phase.BODY and self.cycle is not None and self.cycle.response_started
        if phase is Phase.BODY and self.cycle is not None:
            self.cycle.disconnected = True  # the app reads a disconnect, writes nothing more
        close_slow(self.transport, phase, answered)
