"""uvicorn's httptools protocol with slow-client deadlines (``cli/slow_clients.py``).

httptools' parser calls back at each step of a request, so the guard follows them: a request
begins, its headers are complete, a body chunk arrives, the message is complete.
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cli.guarded_connection import GuardedConnection


class GuardedHttpToolsProtocol(GuardedConnection, HttpToolsProtocol):
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
