"""The run's engine-load counter: new ``VLLM::EngineCore`` processes, polled from /proc."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.engine_loads import POLL_S, TITLE, EngineLoads, engine_core_pids


def _fake_proc(root: Path, pid: int, cmdline: bytes) -> None:
    (root / str(pid)).mkdir()
    (root / str(pid) / "cmdline").write_bytes(cmdline)


def _titled_process() -> subprocess.Popen[bytes]:
    """A process whose argv reads as vLLM's engine core (vLLM sets it with setproctitle)."""
    return subprocess.Popen(["bash", "-c", f"exec -a {TITLE.decode()} sleep 30"])


def test_engine_core_pids_when_listed_then_only_engine_cores(tmp_path: Path) -> None:
    _fake_proc(tmp_path, 10, TITLE + b"\0")
    _fake_proc(tmp_path, 11, b"python\0-m\0cli\0serve\0")
    _fake_proc(tmp_path, 12, b"VLLM::Worker\0")
    (tmp_path / "self").mkdir()
    assert engine_core_pids(tmp_path) == {10}


def test_engine_loads_when_an_engine_core_starts_then_counted_and_older_ones_not() -> None:
    older = _titled_process()
    time.sleep(0.5)
    loads = EngineLoads()
    loads.start()
    newer = _titled_process()
    try:
        deadline = time.monotonic() + 20 * POLL_S
        while newer.pid not in loads.seen and time.monotonic() < deadline:
            time.sleep(POLL_S / 4)
    finally:
        for process in (older, newer):
            process.kill()
            process.wait()
    summary = loads.stop()
    assert newer.pid in loads.seen and older.pid not in loads.seen
    assert summary.startswith(f"engine loads: {len(loads.seen)}; wall time: ")
