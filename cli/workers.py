"""``serve --workers N``: N gateway processes behind one port, for remote mode.

The parent binds the API port (and the probe port) once and starts N workers (spawned
interpreters), each a whole gateway serving those sockets: the kernel hands each new
connection to one of them. Every worker keeps its books in the shared database and its
limits in the shared Redis, so N workers act as N replicas of one gateway; each has its own
``metering.instance_id`` (``<id>-<k>``: its settlement journal and the rows it recovers after
a crash are its own). Per-process state stays per worker: ``limits.max_in_flight``, the fair
queue and ``/metrics`` (a scrape reads the worker that answered).

An embedded engine is one process holding the accelerator: ``--workers`` above 1 is refused
for it. SIGTERM or SIGINT to the parent reaches every worker, each drains as one gateway
does; a worker that dies after starting is started again, one that fails to start stops
them all.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

import typer

from gateway.settings import Settings

STARTUP_S = 30.0  # a worker that exits sooner failed to start: no restart loop


def refuse_workers(settings: Settings, workers: int) -> str | None:
    """Why ``workers`` processes cannot serve ``settings`` (None: they can)."""
    if workers <= 1:
        return None
    for name in settings.served_models():
        if not settings.models[name].is_remote:
            return (f"--workers {workers}: model {name} runs an embedded engine, one process "
                    "with the accelerator; serve it with one worker, or run its engine as a "
                    "replica (`llm-gateway engine serve`) and the gateway in remote mode")
    if settings.database_url().startswith("sqlite"):
        return (f"--workers {workers} needs the shared database (metering.database_url, "
                "PostgreSQL): the workers keep one set of books")
    if not settings.metering.redis_url:
        return (f"--workers {workers} needs Redis (metering.redis_url): the workers share "
                "limits and budgets through it")
    return None


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(profile: str | None, index: int, host: str, port: int, probe_port: int | None,
            api: socket.socket, probes: socket.socket | None) -> None:
    os.setpgrp()  # a terminal's Ctrl-C reaches the parent only; it forwards it once
    from cli.gateway_server import run_gateway
    from gateway.app import create_app
    from gateway.bootstrap import build_state, embedded_models
    from gateway.settings import load_settings

    base = load_settings(profile=profile).metering.instance_id
    os.environ["LLMGW_METERING__INSTANCE_ID"] = f"{base}-{index}"
    settings = load_settings(profile=profile)
    state = build_state(settings, embedded_models(settings), metered=True)
    run_gateway(create_app(state), state, settings, host, port, probe_port,
                sockets=(api, probes))


class Workers:
    def __init__(self, profile: str | None, host: str, port: int, probe_port: int | None,
                 count: int) -> None:
        self._args = (profile, host, port, probe_port)
        self._api = listen(host, port)
        self._probes = listen(host, probe_port) if probe_port else None
        self._count = count
        self._context = multiprocessing.get_context("spawn")
        self._running: dict[int, tuple[BaseProcess, float]] = {}
        self._stopping = False

    def _start(self, index: int) -> None:
        profile, host, port, probe_port = self._args
        process = self._context.Process(
            target=_worker, name=f"llm-gateway-worker-{index}",
            args=(profile, index, host, port, probe_port, self._api, self._probes))
        process.start()
        self._running[index] = (process, time.monotonic())

    def _forward(self, sig: int, frame: FrameType | None) -> None:
        del frame
        self._stopping = True
        for process, _ in self._running.values():
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, sig)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._forward)
        for index in range(self._count):
            self._start(index)
        typer.echo(f"llm-gateway: {self._count} workers on {self._args[1]}:{self._args[2]}")
        code = 0
        while self._running:
            wait([process.sentinel for process, _ in self._running.values()])
            for index, (process, started) in list(self._running.items()):
                if process.is_alive():
                    continue
                process.join()
                del self._running[index]
                if self._stopping:
                    continue
                if time.monotonic() - started < STARTUP_S:
                    typer.echo(f"error: worker {index} failed to start (exit "
                               f"{process.exitcode}); stopping the others", err=True)
                    code = process.exitcode or 1
                    self._forward(signal.SIGTERM, None)
                    continue
                typer.echo(f"worker {index} exited ({process.exitcode}); starting it again",
                           err=True)
                self._start(index)
        return code
