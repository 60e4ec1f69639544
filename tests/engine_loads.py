"""How many vLLM engines the test run loaded, and its wall time: printed at the end of the
run (issue #35 keeps the suite under 40 minutes on the slow box by counting and cutting
engine loads).

Every vLLM engine, whoever starts it (the session gateway, a module's own gateway, a stock
replica, a supervisor's restart after a kill), runs an ``EngineCore`` process titled
``VLLM::EngineCore`` that lives for the engine's lifetime (a minute at least, loading). A
thread polls /proc once a second and counts the new ones.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

TITLE = b"VLLM::EngineCore"
POLL_S = 1.0


def engine_core_pids(proc: Path = Path("/proc")) -> set[int]:
    pids = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "cmdline").read_bytes().startswith(TITLE):
                pids.add(int(entry.name))
        except OSError:  # gone between the listing and the read
            continue
    return pids


class EngineLoads:
    """Counts engine cores that appear after ``start``; ``stop`` returns the summary."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self._before: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="engine-loads", daemon=True)
        self._started = 0.0

    def start(self) -> None:
        self._started = time.monotonic()
        self._before = engine_core_pids()  # other runs' engines on this machine
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            self.seen |= engine_core_pids() - self._before

    def stop(self) -> str:
        self._stop.set()
        self._thread.join(timeout=10)
        minutes = (time.monotonic() - self._started) / 60
        return f"engine loads: {len(self.seen)}; wall time: {minutes:.1f} min"
