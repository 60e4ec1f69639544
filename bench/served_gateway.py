"""``llm-gateway serve --profile test`` as a benchmark's own process: a fresh SQLite ledger, the
embedding model off, its log in a file; yields its URL once ``/ready`` says so, and ends the
whole process group after."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx


@contextlib.contextmanager
def served_gateway(port: int, log_path: Path, env: Mapping[str, str], *,
                   cwd: Path | None = None, ready_timeout_s: float = 900) -> Iterator[str]:
    """The gateway on ``port`` with ``env`` over the test profile's settings."""
    with tempfile.TemporaryDirectory(prefix="llmgw-bench-") as tmp:
        environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                       "LLMGW_MODELS__all-minilm-l6-v2__ENABLED": "false",
                       "LLMGW_METERING__DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/ledger.db",
                       **env}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "cli", "serve", "--profile", "test", "--port", str(port)],
                cwd=cwd, env=environment, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, process, ready_timeout_s)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                process.kill()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            ready = httpx.get(url + "/ready", timeout=5)  # 200 once any model serves
            if ready.status_code == 200 and all(ready.json().get("models", {}).values()):
                return
        time.sleep(2)
    raise RuntimeError(f"the gateway was not ready after {timeout_s} s")
