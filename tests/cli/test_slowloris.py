"""Slow clients against the gateway served as ``llm-gateway serve`` serves it (a real process
around the fake engine, ``tests/cli/guarded_gateway.py``; loopback only, bounded counts).

Slowloris: hundreds of sockets that trickle a request's head and never finish it. The probe
port and the API port keep answering, an authenticated request is served, and the server
closes every slow socket (a 408) by the header deadline, or earlier to make room past
``server.max_pending_connections``. Served as before the guard, the same flood turns /health
into 503s and no socket is ever closed. Bodies: a silent body is a 408 after
``server.body_timeout_s``; a body trickling faster than that is served.
Numbers go to bench/results/slow-clients-*.json with LLMGW_WRITE_BENCH=1 (bench/slow_clients.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.slow_clients import RESULTS, FloodPlan, probe, run_flood, summary, write_results
from cli.fd_limit import raise_open_files
from tests.cli.slow_gateway import (
    BODY_TIMEOUT_S,
    HEADER_TIMEOUT_S,
    MAX_IN_FLIGHT,
    SLOW_AFTER_S,
    SlowGateway,
    read_to_eof,
    start,
    status_line,
    stop,
)
from tests.conftest import MODEL

SLOW_SOCKETS = 600  # 20 from each of 30 loopback addresses: under the per-address cap of 32
ADDRESSES = 30
SETTLE_S = 30.0  # beyond a deadline, how long the server may take to act on a loaded machine
TIMED_OUT = "HTTP/1.1 408 Request Timeout"
OPEN_FILES = 4096  # this process holds the other end of every slow socket


@pytest.fixture(scope="module", params=["httptools", "h11"])
def gateway(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[SlowGateway]:
    raise_open_files(OPEN_FILES)
    served = start(tmp_path_factory.mktemp(request.param), request.param, "--parser",
                   request.param)
    try:
        yield served
    finally:
        stop(served)


def _results_folder(tmp_path: Path) -> Path:
    """bench/results/ only on request (LLMGW_WRITE_BENCH=1): a CI run leaves the tree clean."""
    return RESULTS if os.environ.get("LLMGW_WRITE_BENCH") else tmp_path


def _settings(max_in_flight: int = MAX_IN_FLIGHT) -> dict[str, float]:
    return {"header_timeout_s": HEADER_TIMEOUT_S, "body_timeout_s": BODY_TIMEOUT_S,
            "max_pending_connections": 512, "max_pending_per_client": 32,
            "slow_after_s": SLOW_AFTER_S, "max_in_flight": max_in_flight}


def test_flood_when_slow_sockets_fill_the_api_port_then_probes_and_api_answer_and_all_close(
    gateway: SlowGateway, tmp_path: Path,
) -> None:
    assert gateway.probe_port is not None
    plan = FloodPlan(gateway.port, gateway.probe_port, SLOW_SOCKETS, ADDRESSES,
                     wait_s=HEADER_TIMEOUT_S + SETTLE_S, api_key=gateway.key, model=MODEL)
    result = asyncio.run(run_flood(plan))
    record = summary(f"guarded-{gateway.label}", plan, result, _settings())
    write_results(record, _results_folder(tmp_path))
    assert (result.opened, result.connect_errors) == (SLOW_SOCKETS, 0)
    assert result.still_open == 0, record
    assert result.first_answer == Counter({TIMED_OUT: SLOW_SOCKETS}), record
    assert max(result.closed_after_s) >= HEADER_TIMEOUT_S  # held to the deadline, then closed
    assert result.probe_port and {s for _, s in result.probe_port} == {"200"}, record
    assert result.api_port and {s for _, s in result.api_port} == {"200"}, record
    assert result.api_request == "200", record


def test_flood_when_served_as_before_the_guard_then_health_fails_and_nothing_closes(
    tmp_path: Path,
) -> None:
    raise_open_files(OPEN_FILES)
    served = start(tmp_path, "stock", "--stock", probes=False)
    try:
        plan = FloodPlan(served.port, None, SLOW_SOCKETS, ADDRESSES,
                         wait_s=HEADER_TIMEOUT_S + 5, api_key=served.key, model=MODEL)
        result = asyncio.run(run_flood(plan))
    finally:
        stop(served)
    settings = {"protocol": "uvicorn's own (httptools)", "header_timeout": "none",
                "limit_concurrency": MAX_IN_FLIGHT + 64}
    record = summary("stock-uvicorn", plan, result, settings)
    write_results(record, _results_folder(tmp_path))
    assert result.opened == SLOW_SOCKETS
    assert result.still_open == SLOW_SOCKETS, record  # no deadline: every one still held
    assert result.api_port and {s for _, s in result.api_port} == {"503"}, record
    assert result.api_request == "503", record


def test_pending_when_one_address_exceeds_its_cap_then_its_slow_ones_close_early_not_others(
    gateway: SlowGateway,
) -> None:
    async def run() -> tuple[list[float], list[float], str]:
        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection("127.0.0.1", gateway.port,
                                                 local_addr=("127.0.2.1", 0))

        async def answered_after(pair: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                                 opened: float) -> float:
            reader, writer = pair
            try:
                head = status_line(await read_to_eof(reader, 2 * HEADER_TIMEOUT_S + SETTLE_S))
            finally:
                writer.close()
            assert head == TIMED_OUT
            return time.monotonic() - opened

        start_first = time.monotonic()
        first = [asyncio.create_task(answered_after(await connect(), start_first))
                 for _ in range(32)]  # the address's cap, sending nothing
        await asyncio.sleep(SLOW_AFTER_S + 0.5)  # past slow_after_s: those 32 are slow now
        start_more = time.monotonic()
        more = [asyncio.create_task(answered_after(await connect(), start_more))
                for _ in range(8)]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", gateway.port, local_addr=("127.0.2.2", 0))
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        other = status_line(await read_to_eof(reader, SETTLE_S))
        writer.close()
        return list(await asyncio.gather(*first)), list(await asyncio.gather(*more)), other

    first, more, other = asyncio.run(run())
    # The 8 newcomers each closed the address's oldest slow one before its own deadline;
    # nothing is closed before its deadline any other way. The rest held to the deadline.
    assert sorted(first)[:8] == first[:8] and max(first[:8]) < HEADER_TIMEOUT_S, first
    assert min(first[8:]) >= HEADER_TIMEOUT_S and min(more) >= HEADER_TIMEOUT_S, (first, more)
    assert other == "HTTP/1.1 200 OK"


def _chat_head(gateway: SlowGateway, length: int) -> bytes:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {gateway.key}\r\n"
            "Connection: close\r\n\r\n").encode()


def test_body_when_it_stops_arriving_then_408_after_the_body_timeout(
    gateway: SlowGateway,
) -> None:
    async def run() -> tuple[float, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(_chat_head(gateway, 1000) + b'{"model": ')
        await writer.drain()
        silent_since = time.monotonic()
        response = await read_to_eof(reader, BODY_TIMEOUT_S + SETTLE_S)
        writer.close()
        return time.monotonic() - silent_since, response

    silent_for, response = asyncio.run(run())
    assert status_line(response) == TIMED_OUT
    assert json.loads(response.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    assert silent_for >= BODY_TIMEOUT_S * 0.9  # not before the body went silent that long


def test_body_when_it_trickles_faster_than_the_timeout_then_served(
    gateway: SlowGateway,
) -> None:
    body = json.dumps({"model": MODEL, "max_tokens": 2,
                       "messages": [{"role": "user", "content": "Hi"}]}).encode()
    pieces = [body[i:i + len(body) // 6 + 1] for i in range(0, len(body), len(body) // 6 + 1)]

    async def run() -> tuple[float, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(_chat_head(gateway, len(body)))
        started = time.monotonic()
        for piece in pieces:  # a gap of half the body timeout before each piece
            await asyncio.sleep(BODY_TIMEOUT_S / 2)
            writer.write(piece)
            await writer.drain()
        sent_for = time.monotonic() - started
        response = await read_to_eof(reader, SETTLE_S)
        writer.close()
        return sent_for, response

    sent_for, response = asyncio.run(run())
    assert sent_for > BODY_TIMEOUT_S * 2  # the whole body took longer than the idle timeout
    assert status_line(response) == "HTTP/1.1 200 OK", response[:300]


def test_probe_port_when_asked_for_the_api_then_404_and_probes_answer(
    gateway: SlowGateway,
) -> None:
    base = f"http://127.0.0.1:{gateway.probe_port}"
    api = httpx.get(f"{base}/v1/models", headers={"authorization": f"Bearer {gateway.key}"})
    assert api.status_code == 404
    assert api.json()["error"]["code"] == "not_found"
    assert httpx.get(f"{base}/health").json() == {"status": "ok"}
    assert httpx.get(f"{base}/ready").status_code == 200
    assert httpx.get(f"{base}/ready/{MODEL}").json()["ready"] is True


def test_drain_when_sigterm_then_the_probe_port_says_draining_until_the_stream_ends(
    tmp_path: Path,
) -> None:
    served = start(tmp_path, "auto", "--token-delay", "0.02")
    assert served.probe_port is not None
    body = {"model": MODEL, "prompt": "Count", "max_tokens": 300, "stream": True}

    async def run() -> tuple[str, str, int]:
        headers = {"authorization": f"Bearer {served.key}"}
        async with (httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.port}",
                                      timeout=60) as client,
                    client.stream("POST", "/v1/completions", json=body,
                                  headers=headers) as response):
            assert response.status_code == 200
            lines = response.aiter_lines()
            await anext(lines)  # streaming now
            served.process.send_signal(signal.SIGTERM)
            await _until_refused(served.port)  # the API listener has closed
            assert served.probe_port is not None
            (_, ready), (_, health) = (await probe(served.probe_port, "/ready"),
                                       await probe(served.probe_port, "/health"))
            chunks = sum([1 async for line in lines if line.startswith("data:")])
        return ready, health, chunks

    try:
        ready, health, chunks = asyncio.run(run())
        # uvicorn re-raises the signal once it has finished serving
        assert served.process.wait(timeout=SETTLE_S) == -signal.SIGTERM
    finally:
        stop(served)
    assert "Finished server process" in served.log.read_text()
    assert (ready, health) == ("503", "200")  # draining, alive, on the probe port
    assert chunks > 0  # the stream went on after the signal


async def _until_refused(port: int) -> None:
    async with asyncio.timeout(SETTLE_S):  # polled: the signal's effect has no event here
        while True:
            if (await probe(port))[1] == "ConnectionRefusedError":
                return
            await asyncio.sleep(0.05)
