"""Engine crash and graceful shutdown, on a gateway of their own (they break it on purpose).

This module starts its own real gateway rather than the shared session one: killing the
engine and sending SIGTERM would disturb every other engine test.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import CHAT_ONLY, LiveGateway, start_gateway, stop_gateway

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.own_engine]
STORY = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
RECOVERY_TIMEOUT_S = 600


@pytest.fixture(scope="module")
def own_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    tmp = tmp_path_factory.mktemp("faults")
    env = {
        "LLMGW_METERING__DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'ledger.db'}",
        "LLMGW_LIMITS__DRAIN_TIMEOUT_S": "60",
        **CHAT_ONLY,  # the engine killed below is then the one serving the chat model
    }
    gateway = start_gateway(tmp / "gateway.log", env)
    try:
        yield gateway
    finally:
        stop_gateway(gateway)


def engine_core(gateway: LiveGateway) -> psutil.Process:
    children = psutil.Process(gateway.process.pid).children(recursive=True)
    cores = [p for p in children if "EngineCore" in " ".join(p.cmdline()) + p.name()]
    assert len(cores) == 1, f"one engine expected, found {[p.cmdline() for p in cores]}"
    return cores[0]


def chat(gateway: LiveGateway, **extra: Any) -> httpx.Response:
    body = {"model": gateway.model, "messages": STORY, "max_tokens": 16, **extra}
    return httpx.post(f"{gateway.v1}/chat/completions", json=body,
                      headers=gateway.admin_headers(), timeout=120)


def stream_lines(gateway: LiveGateway, max_tokens: int, out: list[str]) -> None:
    body = {"model": gateway.model, "messages": STORY, "max_tokens": max_tokens,
            "temperature": 0.8, "seed": 1, "stream": True,
            "stream_options": {"include_usage": True}}
    try:
        with httpx.stream("POST", f"{gateway.v1}/chat/completions", json=body,
                          headers=gateway.admin_headers(), timeout=120) as response:
            out.extend(line for line in response.iter_lines() if line.startswith("data: "))
    except httpx.HTTPError as exc:
        out.append(f"transport error: {exc}")


def assert_new_requests_refused(gateway: LiveGateway) -> None:
    """Once draining, a new request gets a 503 (connection already open or accepted before
    uvicorn closed its socket) or no connection at all (socket closed)."""
    try:
        response = chat(gateway)
    except httpx.HTTPError:
        return
    assert response.status_code == 503, response.text
    assert response.json()["error"]["type"] == "service_unavailable"


def wait_ready(gateway: LiveGateway, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if httpx.get(f"{gateway.base_url}/ready/{gateway.model}", timeout=10).status_code == 200:
            return True
        time.sleep(2)
    return False


def test_engine_when_killed_then_503_with_retry_after_and_recovers_without_restart(
    own_gateway: LiveGateway,
) -> None:
    assert chat(own_gateway).status_code == 200
    in_flight: list[str] = []
    streamer = threading.Thread(target=stream_lines, args=(own_gateway, 1500, in_flight))
    streamer.start()
    time.sleep(3)
    engine_core(own_gateway).kill()
    streamer.join(timeout=120)
    assert not streamer.is_alive(), "a client connection hung after the engine died"
    assert in_flight[-1] == "data: [DONE]"
    assert any('"error"' in line for line in in_flight)

    refused = chat(own_gateway)
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "service_unavailable"
    assert httpx.get(f"{own_gateway.base_url}/ready").status_code == 503
    assert httpx.get(f"{own_gateway.base_url}/ready/{own_gateway.model}").status_code == 503
    assert httpx.get(f"{own_gateway.base_url}/health").status_code == 200

    assert wait_ready(own_gateway, RECOVERY_TIMEOUT_S), own_gateway.log_tail()
    assert own_gateway.process.poll() is None
    recovered = chat(own_gateway, temperature=0)
    assert recovered.status_code == 200
    assert recovered.json()["usage"]["completion_tokens"] > 0


def test_sigterm_when_streams_in_flight_then_they_finish_and_new_requests_are_refused(
    own_gateway: LiveGateway,
) -> None:
    streams: list[list[str]] = [[] for _ in range(4)]
    threads = [threading.Thread(target=stream_lines, args=(own_gateway, 48, out))
               for out in streams]
    for thread in threads:
        thread.start()
    time.sleep(2)
    own_gateway.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert_new_requests_refused(own_gateway)
    for thread in threads:
        thread.join(timeout=120)
    for lines in streams:
        assert lines[-1] == "data: [DONE]", lines[-3:]
        payloads = [json.loads(line[6:]) for line in lines[:-1]]
        finishes = [c["choices"][0]["finish_reason"] for c in payloads if c.get("choices")]
        assert finishes[-1] in ("stop", "length")
        assert payloads[-1]["usage"]["completion_tokens"] > 0
    # uvicorn re-raises the captured SIGTERM once shutdown is complete: -SIGTERM is a clean end.
    assert own_gateway.process.wait(timeout=120) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in Path(own_gateway.log_path).read_text(errors="replace")
