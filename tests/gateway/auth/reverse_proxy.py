"""A minimal HTTP/1.1 reverse proxy on loopback, like an ingress controller's hop: each
request is forwarded to the upstream with ``X-Forwarded-For`` naming the peer the proxy saw
(appended to any the client sent), one request per connection. Clients bind distinct
loopback addresses (127.0.0.2, 127.0.0.3, ...) to look like distinct clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

HEAD_LIMIT = 64 * 1024


def _rewrite(head: bytes, client: str) -> tuple[bytes, int]:
    """The request head with ``X-Forwarded-For`` extended and the connection closed after
    it; and the body's length."""
    request_line, *lines = head.decode("latin1").split("\r\n")
    forwarded, kept, length = [], [], 0
    for line in lines:
        name, _, value = line.partition(":")
        lowered = name.strip().lower()
        if lowered == "x-forwarded-for":
            forwarded.append(value.strip())
        elif lowered == "content-length":
            length = int(value.strip())
            kept.append(line)
        elif lowered not in ("connection", "keep-alive"):
            kept.append(line)
    forwarded.append(client)
    kept += [f"X-Forwarded-For: {', '.join(forwarded)}", "Connection: close"]
    return ("\r\n".join([request_line, *kept]) + "\r\n\r\n").encode("latin1"), length


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while piece := await reader.read(65536):
        writer.write(piece)
        await writer.drain()


class ReverseProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            client = writer.get_extra_info("peername")[0]
            rewritten, length = _rewrite(head[:-4][:HEAD_LIMIT], client)
            body = await reader.readexactly(length)
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1",
                                                                 self.upstream_port)
            up_writer.write(rewritten + body)
            await up_writer.drain()
            await _pipe(up_reader, writer)
            up_writer.close()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Serve on 127.0.0.1; yields the proxy's base URL."""
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{self.port}"
        finally:
            server.close()
            await server.wait_closed()
