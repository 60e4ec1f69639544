"""The probes on a port of their own (``server.probe_port``).

``/health`` and ``/ready`` (``/ready/<model>`` too) answer on a second listener of the same
process and event loop; every other path there is a 404, so the API is never served on it.
Sockets that flood the API port (slow ones, or too many) then cannot fail a liveness probe:
this listener has its own connections, its own count of pending ones and no connection limit.
It stays open through a drain (``/ready`` says 503 ``draining``, ``/health`` keeps telling the
truth) and closes when the process has finished serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.server import ServerState

from gateway.errors import error_envelope

PROBE_PATHS = ("/health", "/ready")
logger = logging.getLogger("uvicorn.error")


def is_probe(path: str) -> bool:
    return path in PROBE_PATHS or path.startswith("/ready/")


class ProbesOnly:
    """Passes the probe paths to the app; anything else gets a 404 envelope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_probe(scope["path"]):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        body = json.dumps(error_envelope("This port serves only the probes (/health, /ready).",
                                         "invalid_request_error", None, "not_found")).encode()
        await send({"type": "http.response.start", "status": 404,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class ProbeListener:
    """A listener for the probes, started beside the API's once the app has started."""

    def __init__(self, app: ASGIApp, host: str, port: int,
                 protocol: type[asyncio.Protocol], sock: socket.socket | None = None) -> None:
        self.host, self.port = host, port
        self._sock = sock  # already bound and listening (``serve --workers``)
        # No lifespan (the API listener's server runs it), no logging set-up (access_log=False
        # would silence uvicorn's access logger for the API listener too), no proxy headers.
        self.config = uvicorn.Config(ProbesOnly(app), host=host, port=port, lifespan="off",
                                     log_config=None, http=protocol, ws="none",
                                     proxy_headers=False)
        self.state = ServerState()
        self._server: asyncio.Server | None = None

    async def start(self, app_state: dict[str, Any]) -> None:
        if not self.config.loaded:
            self.config.load()
        config = self.config

        def create_protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.state, app_state=app_state)

        loop = asyncio.get_running_loop()
        if self._sock is not None:
            self._server = await loop.create_server(create_protocol, sock=self._sock,
                                                    backlog=config.backlog)
        else:
            self._server = await loop.create_server(create_protocol, host=self.host,
                                                    port=self.port, backlog=config.backlog)
        logger.info("Probes (/health, /ready) also on http://%s:%d", self.host, self.port)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self.state.connections):
            connection.shutdown()
