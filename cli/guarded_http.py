"""The HTTP protocol class ``llm-gateway serve`` hands uvicorn (``http=``): uvicorn's own
(httptools where installed, as uvicorn's ``auto`` picks; h11 otherwise) with slow-client
deadlines and caps (``cli/slow_clients.py``). One class per listener: each counts its own
pending connections, so a flood on the API port cannot crowd out the probe port's."""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Literal

from cli.slow_clients import PendingConnections, SlowClientPolicy
from gateway.settings import ServerSettings

Parser = Literal["auto", "httptools", "h11"]


def policy(settings: ServerSettings) -> SlowClientPolicy:
    return SlowClientPolicy(
        header_timeout_s=settings.header_timeout_s, body_timeout_s=settings.body_timeout_s,
        max_pending=settings.max_pending_connections,
        max_pending_per_client=settings.max_pending_per_client,
        slow_after_s=settings.slow_after_s)


def guarded_protocol(policy: SlowClientPolicy, parser: Parser = "auto") -> type[asyncio.Protocol]:
    """A protocol class for one listener, with its own count of pending connections."""
    if parser == "auto":
        parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    base: type[asyncio.Protocol]
    if parser == "httptools":
        from cli.guarded_httptools import GuardedHttpToolsProtocol
        base = GuardedHttpToolsProtocol
    else:
        from cli.guarded_h11 import GuardedH11Protocol
        base = GuardedH11Protocol
    return type(base.__name__, (base,), {"pending": PendingConnections(policy)})
