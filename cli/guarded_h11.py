"""uvicorn's h11 protocol with slow-client deadlines (``cli/slow_clients.py``).

The slim gateway image has no httptools, so uvicorn serves with h11 there. h11 parses a
whole batch of bytes at once; after each batch the guard reads where the client's side of the
connection stands: ``IDLE`` (a request begun, headers incomplete), ``SEND_BODY``, or done.
"""

from __future__ import annotations

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from cli.guarded_connection import GuardedConnection
from cli.slow_clients import Phase


class GuardedH11Protocol(GuardedConnection, H11Protocol):
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
