"""The token-rate stubs (bench/stubs) as processes on loopback, for the bench's tests."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

from bench.targets import REPO
from tests.conftest import free_port

REPLICA_KEY = "stub-replica-key"
UPSTREAM_KEY = "upstream-secret"  # tests.gateway.upstream.conftest sets TEST_UPSTREAM_KEY to it

@contextlib.contextmanager
def stub(module: str, *args: str) -> Iterator[str]:
    """``python -m bench.stubs.<module>`` on a free port, until the test ends."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", f"bench.stubs.{module}", "--port",
                                str(port), "--rate", "500", *args], cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"{module} exited with {process.returncode}"
            assert time.monotonic() < deadline, f"{module} did not answer /health"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
