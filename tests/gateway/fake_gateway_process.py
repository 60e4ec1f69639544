"""Start ``tests.gateway.fake_gateway`` (the metered app around a fake engine) as a process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import REPO, free_port


def start_fake_gateway(database_url: str, log: Path, token_delay: float,
                       extra_env: dict[str, str] | None = None,
                       ) -> tuple[subprocess.Popen[bytes], str]:
    """``tests.gateway.fake_gateway`` on a free port with ledger ``database_url``;
    returns the process and its base URL once ``/ready`` answers 200."""
    port = free_port()
    env = {**os.environ, "LLMGW_METERING__DATABASE_URL": database_url, **(extra_env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.gateway.fake_gateway", "--port", str(port),
         "--token-delay", str(token_delay)],
        cwd=REPO, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"fake gateway not ready:\n{log.read_text(errors='replace')}")
