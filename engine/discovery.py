"""Where a model's engine replicas are: fixed URLs, or a DNS name resolved to pod IPs.

A Kubernetes headless Service's name resolves to the IPs of its ready pods; resolving it on
every health round lets the router follow scale-ups, restarts and drains.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class ReplicaSource:
    urls: tuple[str, ...] = ()
    dns: str | None = None  # "host:port"

    def __post_init__(self) -> None:
        if bool(self.urls) == (self.dns is not None):
            raise ValueError("give either replica URLs or one DNS name, not both or neither")
        for url in self.urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"replica URL {url!r} must start with http:// or https://")
        if self.dns is not None:
            host, _, port = self.dns.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"replica DNS name {self.dns!r} must be host:port")

    async def resolve(self) -> tuple[str, ...]:
        """Base URLs of the replicas now (a failed DNS lookup gives none)."""
        if self.dns is None:
            return tuple(url.rstrip("/") for url in self.urls)
        host, _, port = self.dns.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except OSError:
            return ()
        addresses = sorted({str(info[4][0]) for info in infos})
        return tuple(f"http://{_host(a)}:{port}" for a in addresses)


def _host(address: str) -> str:
    return f"[{address}]" if ipaddress.ip_address(address).version == 6 else address
