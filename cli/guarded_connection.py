"""What the guarded h11 and httptools protocols share: a ``ConnectionGuard`` made with the
connection and told when it closes, the kernel's unread bytes, and how a slow connection is
closed (``cli/slow_clients.py``). Each protocol reports its own parser's steps."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from cli.slow_clients import (
    ConnectionGuard,
    PendingConnections,
    Phase,
    close_slow,
    unread_bytes,
)


class GuardedConnection(asyncio.Protocol):
    """Mixed in before uvicorn's protocol class (whose ``transport``, ``client``, ``loop``,
    ``flow`` and ``cycle`` it reads)."""

    pending: ClassVar[PendingConnections]  # per listener: set by cli.guarded_http
    guard: ConnectionGuard
    transport: asyncio.Transport
    client: tuple[str, int] | None
    loop: asyncio.AbstractEventLoop
    flow: Any
    cycle: Any

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        self.guard = ConnectionGuard(self, address, self.pending, self.loop,
                                     lambda: bool(self.flow.read_paused))
        self.guard.opened()

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.closed()
        super().connection_lost(exc)

    def bytes_waiting(self) -> bool:
        return unread_bytes(self.transport) > 0

    def slow_client(self, phase: Phase) -> None:
        answered = phase is Phase.BODY and self.cycle is not None and self.cycle.response_started
        if phase is Phase.BODY and self.cycle is not None:
            self.cycle.disconnected = True  # the app reads a disconnect, writes nothing more
        close_slow(self.transport, phase, answered)
