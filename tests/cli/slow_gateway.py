"""Starting ``tests.cli.guarded_gateway`` for the slow-client tests, and raw-socket helpers."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import REPO, free_port
from tests.gateway.metered import ADMIN

HEADER_TIMEOUT_S = 3.0
SLOW_AFTER_S = 1.0  # past the per-address cap, pending this long may be closed
BODY_TIMEOUT_S = 2.0
MAX_IN_FLIGHT = 256  # serve's old connection limit would be 320: below the floods here


@dataclass(frozen=True)
class SlowGateway:
    process: subprocess.Popen[bytes]
    port: int
    probe_port: int | None
    key: str  # a tenant's virtual key
    log: Path
    label: str  # how it is served: the parser, or stock


def start(tmp: Path, label: str, *args: str, probes: bool = True) -> SlowGateway:
    """The gateway on free ports with the tests' slow-client settings; returns once it is
    ready and a tenant key exists."""
    port, probe_port = free_port(), (free_port() if probes else None)
    env = {**os.environ, "LLMGW_METERING__DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/ledger.db",
           "LLMGW_SERVER__HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
           "LLMGW_SERVER__BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
           "LLMGW_SERVER__SLOW_AFTER_S": str(SLOW_AFTER_S),
           "LLMGW_LIMITS__MAX_IN_FLIGHT": str(MAX_IN_FLIGHT)}
    command = [sys.executable, "-m", "tests.cli.guarded_gateway", "--port", str(port), *args]
    command += ["--probe-port", str(probe_port)] if probe_port else []
    log = tmp / "gateway.log"
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log.open("ab"),
                               stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                created = httpx.post(f"{base}/admin/keys", headers=ADMIN, json={"tenant": "t"})
                assert created.status_code == 201, created.text
                return SlowGateway(process, port, probe_port, created.json()["key"], log,
                                   label)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"gateway not ready:\n{log.read_text(errors='replace')}")


def stop(gateway: SlowGateway) -> None:
    gateway.process.terminate()
    try:
        gateway.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        gateway.process.kill()
        gateway.process.wait(timeout=30)


async def read_to_eof(reader: asyncio.StreamReader, bound_s: float) -> bytes:
    """Everything the server sends until it closes; fails when it has not closed in time."""
    received = b""
    async with asyncio.timeout(bound_s):
        while data := await reader.read(4096):
            received += data
    return received


def status_line(response: bytes) -> str:
    return response.split(b"\r\n", 1)[0].decode(errors="replace")
