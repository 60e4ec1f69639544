"""Run one gateway process with uvicorn: the guarded HTTP protocol (slow-client deadlines),
the in-flight and open-file limits, the probe listener, the drain on a signal, and the banner
on a terminal. ``serve`` runs one; ``serve --workers N`` runs one per worker process."""

from __future__ import annotations

import socket

import uvicorn
from starlette.types import ASGIApp

from cli.banner import print_banner
from cli.draining import Drainable, DrainingServer
from cli.fd_limit import raise_open_files
from cli.guarded_http import Parser, guarded_protocol, policy
from cli.probe_listener import ProbeListener
from gateway.settings import Settings

CONNECTION_SLACK = 64
OTHER_FILES = 1024  # the ledger's and engines' sockets, model and log files


def run_gateway(app: ASGIApp, state: Drainable, settings: Settings, host: str, port: int,
                probe_port: int | None, parser: Parser = "auto",
                sockets: tuple[socket.socket, socket.socket | None] | None = None,
                human_logs: bool = False) -> None:
    """Serve ``app`` until a signal ends the drain (tests serve the fake-engine gateway so,
    with either of uvicorn's HTTP parsers). ``sockets``: the API's and the probes' listening
    sockets, already bound (``--workers``)."""
    from gateway.observability.logging import log_config

    slow = policy(settings.server)
    # Requests beyond the in-flight cap (plus room for probes and admin) get a 503. Connections
    # still sending their headers (at most server.max_pending_connections: the oldest is closed
    # past it, cli/slow_clients.py) are counted apart, so slow sockets never cause those 503s.
    limit = settings.limits.max_in_flight + CONNECTION_SLACK + slow.max_pending
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="info",
        log_config=log_config(not human_logs),
        timeout_graceful_shutdown=int(settings.limits.drain_timeout_s),
        http=guarded_protocol(slow, parser),  # header and body deadlines, pending-connection caps
        ws="none",  # no WebSocket routes: an upgrade request is served as plain HTTP
        limit_concurrency=limit,
        # X-Forwarded-For is believed from these peers only (the failed-auth throttle
        # counts the client it names); anyone else's own address is the client's.
        forwarded_allow_ips=list(settings.forwarded_allow_ips),
    )
    raise_open_files(limit + 2 * slow.max_pending + OTHER_FILES)  # logging is set up now
    api, probe_socket = sockets if sockets is not None else (None, None)
    probes = (ProbeListener(app, host, probe_port, guarded_protocol(slow, parser), probe_socket)
              if probe_port else None)
    started = (lambda: print_banner(settings, host, port)) if human_logs else None
    DrainingServer(config, state, probes, started).run(sockets=None if api is None else [api])
