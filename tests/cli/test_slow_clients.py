"""The slow-client guard's parts in one process: the pending-connection caps, the header and
body deadlines, the probe-only paths, the open-file limit. The served behaviour is tested
against a real process in tests/cli/test_slowloris.py."""

from __future__ import annotations

import asyncio
import logging
import resource

import pytest
from starlette.types import Receive, Scope, Send

from cli.fd_limit import raise_open_files
from cli.guarded_http import guarded_protocol, policy
from cli.probe_listener import ProbeListener, is_probe
from cli.slow_clients import (
    ConnectionGuard,
    PendingConnections,
    Phase,
    SlowClientPolicy,
    unread_bytes,
)
from gateway.settings import ServerSettings, load_settings

BOUND_S = 10.0  # what a deadline may take to fire on a loaded machine


class Connection:
    def __init__(self, unread: bool = False) -> None:
        self.closed: list[Phase] = []
        self.event = asyncio.Event()
        self.unread = unread  # its request sits in the kernel, not yet read by the loop

    def bytes_waiting(self) -> bool:
        return self.unread

    def slow_client(self, phase: Phase) -> None:
        self.closed.append(phase)
        self.event.set()


def _policy(header_s: float = 60, body_s: float = 60, total: int = 100,
            per_client: int = 10) -> SlowClientPolicy:
    return SlowClientPolicy(header_s, body_s, total, per_client, slow_after_s=1.0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_pending_when_a_burst_from_one_address_passes_its_cap_then_all_are_admitted() -> None:
    pending = PendingConnections(_policy(per_client=2), Clock())
    burst = [Connection() for _ in range(200)]  # 200 streams opened at once from one host
    for connection in burst:
        pending.admit(connection, "10.0.0.1")
    assert len(pending) == 100  # only the overall cap (100 here) bounds a burst
    assert sum(bool(c.closed) for c in burst) == 100 and not any(c.closed for c in burst[100:])


def test_pending_when_an_address_past_its_cap_has_a_slow_one_then_its_oldest_is_closed(
) -> None:
    clock = Clock()
    pending = PendingConnections(_policy(per_client=2), clock)
    first, second, third, other = Connection(), Connection(), Connection(), Connection()
    pending.admit(first, "10.0.0.1")
    pending.admit(second, "10.0.0.1")
    clock.now = 1.5  # past slow_after_s: the first is slow now
    pending.admit(third, "10.0.0.1")
    pending.admit(other, "10.0.0.2")
    assert first.closed == [Phase.HEADERS]
    assert not any(c.closed for c in (second, third, other)) and len(pending) == 3


def test_pending_when_a_busy_client_writes_its_requests_a_second_late_then_none_is_closed(
) -> None:
    clock = Clock()
    rules = policy(ServerSettings())
    pending = PendingConnections(rules, clock)
    streams = [Connection() for _ in range(200)]  # one host's 200 streams, its loop behind
    for i, connection in enumerate(streams):
        clock.now = i * 0.01  # connected over 2 s, none has written its request yet
        pending.admit(connection, "10.0.0.1")
    assert not any(c.closed for c in streams)
    clock.now = rules.slow_after_s + 0.5  # a flood's sockets are slow by now
    pending.admit(Connection(), "10.0.0.1")
    assert streams[0].closed == [Phase.HEADERS] and not any(c.closed for c in streams[1:])


def test_pending_when_the_loop_left_an_old_one_unread_then_the_oldest_read_one_is_closed(
) -> None:
    clock = Clock()
    pending = PendingConnections(_policy(per_client=2), clock)
    unread, slow, third = Connection(unread=True), Connection(), Connection()
    pending.admit(unread, "10.0.0.1")
    pending.admit(slow, "10.0.0.1")
    clock.now = 5.0  # a stalled loop: both look old, but the first one's request waits unread
    pending.admit(third, "10.0.0.1")
    assert unread.closed == [] and slow.closed == [Phase.HEADERS] and third.closed == []


def test_pending_when_every_old_one_has_bytes_unread_then_none_is_closed() -> None:
    clock = Clock()
    pending = PendingConnections(_policy(per_client=2), clock)
    burst = [Connection(unread=True) for _ in range(3)]
    for connection in burst[:2]:
        pending.admit(connection, "10.0.0.1")
    clock.now = 5.0
    pending.admit(burst[2], "10.0.0.1")
    assert not any(c.closed for c in burst) and len(pending) == 3


def test_pending_when_the_per_client_cap_is_zero_then_one_address_may_hold_many() -> None:
    pending = PendingConnections(_policy(total=1000, per_client=0), Clock())
    connections = [Connection() for _ in range(500)]
    for connection in connections:
        pending.admit(connection, "proxy")
    assert len(pending) == 500 and not any(c.closed for c in connections)


def test_pending_when_at_the_overall_cap_then_the_heaviest_address_loses_its_oldest() -> None:
    pending = PendingConnections(_policy(total=4, per_client=0), Clock())
    real = Connection()
    pending.admit(real, "client")  # the oldest of all, from an address holding one
    flood = [Connection() for _ in range(5)]
    for connection in flood:
        pending.admit(connection, "flooder")
    assert [c.closed for c in flood] == [[Phase.HEADERS], [Phase.HEADERS], [], [], []]
    assert real.closed == [] and len(pending) == 4


async def test_guard_when_headers_do_not_arrive_then_closed_at_the_header_deadline() -> None:
    connection = Connection()
    pending = PendingConnections(_policy(header_s=0.05))
    guard = ConnectionGuard(connection, "a", pending, asyncio.get_running_loop(), lambda: False)
    guard.opened()
    guard.request_started()  # bytes trickling in do not move the deadline
    async with asyncio.timeout(BOUND_S):
        await connection.event.wait()
    assert connection.closed == [Phase.HEADERS] and len(pending) == 0


async def test_guard_when_body_chunks_keep_coming_then_open_and_closed_once_they_stop() -> None:
    connection = Connection()
    pending = PendingConnections(_policy(header_s=0.05, body_s=0.2))
    guard = ConnectionGuard(connection, "a", pending, asyncio.get_running_loop(), lambda: False)
    guard.opened()
    guard.headers_complete()  # the header deadline no longer applies
    assert len(pending) == 0
    for _ in range(10):  # 0.5 s of chunks 0.05 s apart: longer than the idle timeout
        await asyncio.sleep(0.05)
        guard.body_chunk()
    assert connection.closed == []
    async with asyncio.timeout(BOUND_S):
        await connection.event.wait()
    assert connection.closed == [Phase.BODY]


async def test_guard_when_the_app_has_paused_reading_then_the_body_deadline_waits() -> None:
    connection, paused = Connection(), [True]
    guard = ConnectionGuard(connection, "a", PendingConnections(_policy(body_s=0.05)),
                            asyncio.get_running_loop(), lambda: paused[0])
    guard.opened()
    guard.headers_complete()
    await asyncio.sleep(0.3)  # six body timeouts while the app does not read
    assert connection.closed == []
    paused[0] = False
    async with asyncio.timeout(BOUND_S):
        await connection.event.wait()
    assert connection.closed == [Phase.BODY]


async def test_unread_bytes_when_the_loop_has_not_read_a_socket_then_counted() -> None:
    accepted: asyncio.Future[asyncio.Transport] = asyncio.get_running_loop().create_future()

    class Unread(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            transport.pause_reading()  # as a stalled loop would: nothing is read
            accepted.set_result(transport)

    server = await asyncio.get_running_loop().create_server(Unread, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        transport = await asyncio.wait_for(accepted, BOUND_S)
        assert unread_bytes(transport) == 0
        request = b"GET /health HTTP/1.1\r\n\r\n"
        writer.write(request)
        await writer.drain()
        for _ in range(int(BOUND_S / 0.01)):  # loopback delivers at once; a loaded box later
            if unread_bytes(transport) >= len(request):
                break
            await asyncio.sleep(0.01)
        assert unread_bytes(transport) == len(request)
    finally:
        writer.close()
        server.close()


async def test_guard_when_the_message_is_complete_then_no_deadline_is_left() -> None:
    connection = Connection()
    guard = ConnectionGuard(connection, "a", PendingConnections(_policy(0.05, 0.05)),
                            asyncio.get_running_loop(), lambda: False)
    guard.opened()
    guard.headers_complete()
    guard.message_complete()
    assert guard.phase is Phase.IDLE
    await asyncio.sleep(0.3)
    assert connection.closed == []
    guard.request_started()  # the next request on the kept-alive connection: a new deadline
    async with asyncio.timeout(BOUND_S):
        await connection.event.wait()
    assert connection.closed == [Phase.HEADERS]


def test_policy_when_read_from_the_settings_then_the_defaults_hold() -> None:
    server = load_settings(profile="test").server
    assert server.probe_port is None
    assert policy(server) == SlowClientPolicy(10, 30, 512, 32, 5)
    with pytest.raises(ValueError):
        SlowClientPolicy(0, 30, 512, 32)
    with pytest.raises(ValueError, match="slow_after_s"):
        ServerSettings(header_timeout_s=4)  # slow_after_s (5) must come before the deadline


def test_guarded_protocol_when_built_then_each_listener_counts_its_own_pending() -> None:
    slow = policy(ServerSettings())
    api, probes = guarded_protocol(slow, "h11"), guarded_protocol(slow, "h11")
    assert api.pending is not probes.pending  # type: ignore[attr-defined]
    assert guarded_protocol(slow, "httptools").__name__ == "GuardedHttpToolsProtocol"


def test_probe_paths_when_checked_then_only_health_and_ready() -> None:
    assert is_probe("/health") and is_probe("/ready") and is_probe("/ready/smollm2")
    assert not any(is_probe(p) for p in ("/v1/models", "/admin/keys", "/metrics", "/",
                                         "/healthz", "/readyz"))


def test_open_files_when_the_soft_limit_is_low_then_raised_towards_need_within_the_hard(
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        lowered = min(soft, 256) if soft != resource.RLIM_INFINITY else 256
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
        wanted = 512 if hard == resource.RLIM_INFINITY else min(512, hard)
        assert raise_open_files(512) == wanted
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == wanted
        assert raise_open_files(100) == wanted  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_probe_listener_when_configured_then_the_api_access_log_is_left_alone() -> None:
    access = logging.getLogger("uvicorn.access")
    handler = logging.NullHandler()
    access.addHandler(handler)
    propagate, access.propagate = access.propagate, True  # as before any test configured it
    try:
        ProbeListener(_app, "127.0.0.1", 1, guarded_protocol(policy(ServerSettings())))
        assert handler in access.handlers and access.propagate
    finally:
        access.removeHandler(handler)
        access.propagate = propagate


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    return None
