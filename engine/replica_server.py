"""Running a replica's gate (engine/replica_gate.py) on its public port, for as long as its
vLLM serves.

``serve_beside`` (``llm-gateway engine serve``): vLLM is this process's child, on loopback. The
public port is bound before vLLM starts loading (a taken port fails at once). SIGTERM or SIGINT
is passed on to vLLM, which drains for its ``--shutdown-timeout``; the gate serves until vLLM
has exited, then stops, and the command exits with vLLM's status. vLLM gets SIGTERM should
this process die (Linux ``PR_SET_PDEATHSIG``).

``serve_sidecar`` (``llm-gateway engine gate``, the chart's engine pods): vLLM runs in the
pod's other container. On SIGTERM the gate serves on until vLLM's port stops accepting
connections (vLLM closes it when its own SIGTERM arrives, after the pod's preStop sleep), then
stops accepting and lets the streams in flight finish, for at most ``drain_s``.

Uvicorn serves the gate (its parser frames every request; websockets and lifespan off, no
access log); it would re-raise a caught signal after shutdown, so the signals are handled here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import uvicorn

from engine.launcher import GateBind, ServerLaunch
from engine.replica_gate import ReplicaGate, upstream_client

PR_SET_PDEATHSIG = 1
ENGINE_POLL_S = 1.0
BESIDE_GRACE_S = 5  # vLLM has exited: what is left in flight is already over


class _GateServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # this module's handlers decide
        yield


def gate_server(bind: GateBind, gate: ReplicaGate, *, graceful_s: int = BESIDE_GRACE_S,
                ) -> uvicorn.Server:
    config = uvicorn.Config(
        gate, host=bind.host, port=bind.port, lifespan="off", ws="none", access_log=False,
        log_level="warning", server_header=False, date_header=False,
        # The gateway's client drops idle connections after 5 s: it closes them first.
        timeout_keep_alive=30, timeout_graceful_shutdown=graceful_s)
    return _GateServer(config)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _run(main: Coroutine[Any, Any, int]) -> int:
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def _die_with_parent() -> None:  # in the child, before exec
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def serve_beside(launch: ServerLaunch, bind: GateBind) -> int:
    """Start vLLM (``launch``) and serve its gate on ``bind`` until vLLM exits; its status."""
    server = gate_server(bind, ReplicaGate(bind.policy, bind.upstream, upstream_client()))
    sock = server.config.bind_socket()
    process = subprocess.Popen(
        list(launch.argv), env={**os.environ, **launch.env},
        preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    try:
        return _run(_beside(server, sock, process))
    finally:
        if process.poll() is None:
            process.kill()


async def _beside(server: uvicorn.Server, sock: socket.socket,
                  process: subprocess.Popen[bytes]) -> int:
    def pass_on() -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, pass_on)
    gate = asyncio.create_task(server.serve(sockets=[sock]))
    engine = asyncio.create_task(asyncio.to_thread(process.wait))
    await asyncio.wait({gate, engine}, return_when=asyncio.FIRST_COMPLETED)
    if not engine.done():  # the gate failed: a replica nobody can reach serves nothing
        process.terminate()
        await engine
    server.should_exit = True
    await gate
    code = engine.result()
    return 128 - code if code < 0 else code  # killed by a signal: as a shell reports it


def serve_sidecar(bind: GateBind, drain_s: int) -> int:
    """Serve the gate on ``bind`` in front of a vLLM of another container; 0 once stopped."""
    gate = ReplicaGate(bind.policy, bind.upstream, upstream_client())
    server = gate_server(bind, gate, graceful_s=drain_s)
    sock = server.config.bind_socket()
    return _run(_sidecar(server, sock, bind.engine_port, drain_s))


async def _sidecar(server: uvicorn.Server, sock: socket.socket, engine_port: int,
                   drain_s: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gate = asyncio.create_task(server.serve(sockets=[sock]))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({gate, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if stopping.done():
        await until_engine_gone(engine_port, drain_s)
    stopping.cancel()
    server.should_exit = True
    await gate
    return 0


async def until_engine_gone(engine_port: int, limit_s: float) -> None:
    """Until vLLM's loopback port refuses connections, or ``limit_s`` passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while loop.time() < deadline:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", engine_port), ENGINE_POLL_S)
        except TimeoutError:
            continue  # up but slow: still serving
        except OSError:
            return
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        await asyncio.sleep(ENGINE_POLL_S)
