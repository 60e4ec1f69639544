"""A uvicorn server that drains on SIGTERM/SIGINT (the gateway's).

The first signal marks the app ``draining`` (new requests get 503, ``/ready`` turns 503),
then uvicorn waits for requests in flight up to its graceful-shutdown timeout and cancels
the rest, which abort and settle. With a ``ProbeListener`` the probes also answer on a port
of their own, from when the app has started until the server has finished.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Protocol

import uvicorn
from sse_starlette.sse import AppStatus
from uvicorn.config import STARTUP_FAILURE

from cli.probe_listener import ProbeListener

logger = logging.getLogger("uvicorn.error")


class Drainable(Protocol):
    draining: bool


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: Drainable,
                 probes: ProbeListener | None = None,
                 started: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self._state = state
        self._probes = probes
        self._started = started  # told once the app has started (serve's banner)
        # sse-starlette would otherwise end every stream at the first signal.
        AppStatus.disable_automatic_graceful_drain()  # type: ignore[no-untyped-call]

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._state.draining = True
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._started is not None:
            self._started()
        if self._probes is None or not self.started:
            return
        try:
            await self._probes.start(self.lifespan.state)
        except OSError as exc:  # as uvicorn does when the API port cannot be bound
            logger.error("probe port %d: %s", self._probes.port, exc)
            for server in self.servers:
                server.close()
            await self.lifespan.shutdown()
            sys.exit(STARTUP_FAILURE)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        if self._probes is not None:
            self._probes.close()
