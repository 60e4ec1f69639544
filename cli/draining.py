"""A uvicorn server that drains on SIGTERM/SIGINT (the gateway's).

The first signal marks the app ``draining`` (new requests get 503, ``/ready`` turns 503),
then uvicorn waits for requests in flight up to its graceful-shutdown timeout and cancels
the rest, which abort and settle.
"""

from __future__ import annotations

from types import FrameType
from typing import Protocol

import uvicorn
from sse_starlette.sse import AppStatus


class Drainable(Protocol):
    draining: bool


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: Drainable) -> None:
        super().__init__(config)
        self._state = state
        # sse-starlette would otherwise end every stream at the first signal.
        AppStatus.disable_automatic_graceful_drain()  # type: ignore[no-untyped-call]

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._state.draining = True
        super().handle_exit(sig, frame)
