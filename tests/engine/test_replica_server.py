"""Running the replica gate (engine/replica_server.py): beside its vLLM (``engine serve``) and
as a sidecar (the chart), with signals, against ``python -m http.server`` as the engine."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from engine import replica_server
from engine.replica_server import until_engine_gone
from tests.conftest import REPO, free_port

BESIDE = """import sys
from engine.launcher import GateBind, ServerLaunch
from engine.replica_gate import GatePolicy
from engine.replica_server import serve_beside
gate, engine = int(sys.argv[1]), int(sys.argv[2])
bind = GateBind("127.0.0.1", gate, engine, GatePolicy("generate", "k"))
sys.exit(serve_beside(ServerLaunch(tuple(sys.argv[3:])), bind))
"""
SIDECAR = """import sys
from engine.launcher import GateBind
from engine.replica_gate import GatePolicy
from engine.replica_server import serve_sidecar
bind = GateBind("127.0.0.1", int(sys.argv[1]), int(sys.argv[2]), GatePolicy("generate", "k"))
sys.exit(serve_sidecar(bind, drain_s=30))
"""


def engine_argv(port: int, folder: Path) -> list[str]:
    (folder / "health").write_text("ok")  # GET /health: 200 "ok"
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
            "--directory", str(folder)]


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "the gate exited"
        try:
            if httpx.get(f"{url}/health", timeout=2).text == "ok":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url}/health never answered through the gate")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def start(processes: list[subprocess.Popen[bytes]], argv: list[str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    processes.append(process)
    return process


def test_engine_serve_passes_sigterm_to_vllm_and_exits_with_its_status(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    gate, engine = free_port(), free_port()
    driver = start(processes, [sys.executable, "-c", BESIDE, str(gate), str(engine),
                               *engine_argv(engine, tmp_path)])
    wait_healthy(f"http://127.0.0.1:{gate}", driver)
    child = psutil.Process(driver.pid).children()[0]
    assert "http.server" in child.cmdline()
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=60) == 128 + signal.SIGTERM  # vLLM's status, as a shell says
    assert not child.is_running()


def test_engine_serve_killed_then_its_vllm_is_terminated_too(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    gate, engine = free_port(), free_port()
    driver = start(processes, [sys.executable, "-c", BESIDE, str(gate), str(engine),
                               *engine_argv(engine, tmp_path)])
    wait_healthy(f"http://127.0.0.1:{gate}", driver)
    child = psutil.Process(driver.pid).children()[0]
    driver.kill()
    driver.wait()
    _, alive = psutil.wait_procs([child], timeout=60)
    assert alive == []


def test_sidecar_on_sigterm_serves_until_vllm_closes_its_port_then_exits(
    processes: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    gate, engine = free_port(), free_port()
    vllm = start(processes, engine_argv(engine, tmp_path))
    sidecar = start(processes, [sys.executable, "-c", SIDECAR, str(gate), str(engine)])
    url = f"http://127.0.0.1:{gate}"
    wait_healthy(url, sidecar)
    sidecar.send_signal(signal.SIGTERM)
    assert httpx.get(f"{url}/health", timeout=10).text == "ok"  # vLLM still drains: served
    assert sidecar.poll() is None
    vllm.terminate()
    assert sidecar.wait(timeout=60) == 0


async def test_until_engine_gone_polls_while_the_port_accepts_and_returns_once_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(replica_server, "ENGINE_POLL_S", 0.01)
    polls = 0

    def accepted(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal polls
        polls += 1
        writer.close()

    port = free_port()
    server = await asyncio.start_server(accepted, "127.0.0.1", port)
    waiting = asyncio.create_task(until_engine_gone(port, 60))
    for _ in range(1000):
        if polls >= 3:
            break
        await asyncio.sleep(0.01)
    assert polls >= 3 and not waiting.done()
    server.close()
    await server.wait_closed()
    await asyncio.wait_for(waiting, 10)
