"""Slowloris against a running gateway: many sockets that send a request's head slowly.

``run_flood`` opens ``sockets`` connections to the API port from ``addresses`` loopback
source addresses (127.0.1.1, 127.0.1.2, ...: Linux answers the whole 127/8), writes a
request line and then trickles one header byte per ``trickle_s``, never finishing the head.
While they are open it probes ``/health`` on a fresh connection every ``probe_every_s`` (on the
probe port and on the API port, as a kubelet would) and sends one authenticated chat request
on the API port; it records when the server closed each slow socket (EOF) and what it said
first. ``write_results`` puts JSON and Markdown under ``bench/results/``. The assertions are
the tests' (tests/cli/test_slowloris.py); numbers here are records, noisy on a shared machine.

``python -m bench.slow_clients --port P --probe-port Q --key K --name NAME`` floods a gateway
already running on loopback (e.g. ``python -m tests.cli.guarded_gateway``) and writes the record.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.machine import describe

RESULTS = Path(__file__).resolve().parent / "results"
HEAD = b"GET /v1/models HTTP/1.1\r\nHost: gateway\r\nX-Slow: "


@dataclass(frozen=True)
class FloodPlan:
    port: int
    probe_port: int | None  # None: the probes go to the API port only
    sockets: int
    addresses: int  # loopback source addresses the sockets are spread over
    wait_s: float  # every slow socket must be closed by the server within this
    api_key: str
    model: str
    trickle_s: float = 1.0
    probe_every_s: float = 0.1

    def __post_init__(self) -> None:
        if not 1 <= self.addresses <= 250 or self.sockets < 1 or self.wait_s <= 0:
            raise ValueError("1..250 addresses, at least one socket, a positive wait")


@dataclass
class FloodResult:
    opened: int = 0
    connect_errors: int = 0
    closed_after_s: list[float] = field(default_factory=list)  # open -> server's EOF
    first_answer: Counter[str] = field(default_factory=Counter)  # status line, or "none"
    still_open: int = 0  # not closed by the server within wait_s
    probe_port: list[tuple[float, str]] = field(default_factory=list)  # (latency s, status)
    api_port: list[tuple[float, str]] = field(default_factory=list)
    api_request: str = "not sent"


def source(index: int, addresses: int) -> str:
    return f"127.0.1.{1 + index % addresses}"


async def _slow_socket(index: int, plan: FloodPlan, result: FloodResult,
                       opened: asyncio.Event, held: list[asyncio.StreamWriter]) -> None:
    started = time.monotonic()  # the server's deadline starts later, at its accept
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", plan.port, local_addr=(source(index, plan.addresses), 0))
    except OSError:
        result.connect_errors += 1
        return
    result.opened += 1
    if result.opened + result.connect_errors == plan.sockets:
        opened.set()
    try:
        answer = await _trickle(reader, writer, plan, started + plan.wait_s)
    except BaseException:
        writer.close()
        raise
    if answer is None:  # closed by run_flood once the probes have stopped
        result.still_open += 1
        held.append(writer)
        return
    writer.close()
    result.closed_after_s.append(time.monotonic() - started)
    result.first_answer[answer] += 1


async def _trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   plan: FloodPlan, deadline: float) -> str | None:
    """Send the head a byte at a time until the server closes: its first line, or "none"
    (closed without a word); None when still open at ``deadline``."""
    received = b""
    with contextlib.suppress(OSError):
        writer.write(HEAD)
    while time.monotonic() < deadline:
        try:
            data = await asyncio.wait_for(reader.read(4096), plan.trickle_s)
        except TimeoutError:
            with contextlib.suppress(OSError):
                writer.write(b"a")  # one more byte of a header value that never ends
            continue
        except OSError:
            data = b""  # reset by the server: closed too
        if not data:
            line = received.split(b"\r\n", 1)[0].decode(errors="replace")
            return line or "none"
        received += data
    return None


async def probe(port: int, path: str = "/health", timeout_s: float = 5.0) -> tuple[float, str]:
    """One GET on a fresh connection, as a kubelet probes: (latency, status or error)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
                         .encode())
            data = await reader.read()
            writer.close()
    except (TimeoutError, OSError) as exc:
        return time.monotonic() - started, type(exc).__name__
    status = data.split(b"\r\n", 1)[0].split(b" ")
    return time.monotonic() - started, status[1].decode() if len(status) > 1 else "empty"


async def _probes(plan: FloodPlan, result: FloodResult, stop: asyncio.Event) -> None:
    while not stop.is_set():
        if plan.probe_port is not None:
            result.probe_port.append(await probe(plan.probe_port))
        result.api_port.append(await probe(plan.port))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), plan.probe_every_s)


async def _api_request(plan: FloodPlan, result: FloodResult) -> None:
    body = {"model": plan.model, "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 4}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{plan.port}", timeout=30) as client:
        try:
            response = await client.post("/v1/chat/completions", json=body,
                                         headers={"authorization": f"Bearer {plan.api_key}"})
            result.api_request = str(response.status_code)
        except httpx.HTTPError as exc:
            result.api_request = type(exc).__name__


async def run_flood(plan: FloodPlan) -> FloodResult:
    result = FloodResult()
    opened, stop = asyncio.Event(), asyncio.Event()
    held: list[asyncio.StreamWriter] = []  # still open at wait_s: kept until the probes end
    slow = [asyncio.create_task(_slow_socket(i, plan, result, opened, held))
            for i in range(plan.sockets)]
    prober: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(plan.wait_s):
            await opened.wait()
        prober = asyncio.create_task(_probes(plan, result, stop))
        await _api_request(plan, result)
        await asyncio.gather(*slow)
    finally:
        stop.set()
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
        if prober is not None:
            await prober
        for writer in held:
            writer.close()
    return result


def _at(ordered: list[float], q: float) -> float:
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)


def _percentiles(values: list[float]) -> dict[str, float | None]:
    ordered = sorted(values)
    if not ordered:
        return {"min": None, "p50": None, "p99": None, "max": None}
    return {"min": _at(ordered, 0), "p50": _at(ordered, 0.5), "p99": _at(ordered, 0.99),
            "max": _at(ordered, 1)}


def summary(name: str, plan: FloodPlan, result: FloodResult,
            settings: dict[str, Any]) -> dict[str, Any]:
    def probes(samples: list[tuple[float, str]]) -> dict[str, Any]:
        return {"samples": len(samples), "statuses": dict(Counter(s for _, s in samples)),
                "latency_s": _percentiles([t for t, _ in samples])}

    return {
        "name": name, "plan": {k: v for k, v in asdict(plan).items() if k != "api_key"},
        "settings": settings, "machine": describe(),
        "opened": result.opened, "connect_errors": result.connect_errors,
        "closed_by_server": len(result.closed_after_s), "still_open": result.still_open,
        "closed_after_s": _percentiles(result.closed_after_s),
        # closed before the header deadline could fire: the oldest, to make room past
        # max_pending_connections (the clock starts at connect, before the server's accept)
        "closed_before_header_deadline": (
            sum(t < settings["header_timeout_s"] for t in result.closed_after_s)
            if isinstance(settings.get("header_timeout_s"), int | float) else None),
        "first_answer": dict(result.first_answer),
        "probe_port_health": probes(result.probe_port),
        "api_port_health": probes(result.api_port), "api_request": result.api_request,
        "note": "loopback, client and gateway on the same shared 2-core machine: noisy",
    }


def _markdown(record: dict[str, Any]) -> str:
    machine, closed = record["machine"], record["closed_after_s"]
    probe, api = record["probe_port_health"], record["api_port_health"]
    return "\n".join([
        f"# Slow clients: {record['name']}", "",
        f"Machine: {machine.get('cpu')} ({machine.get('cores_usable')} cores usable), commit "
        f"{machine.get('git_commit')}. Settings: {record['settings']}. {record['note']}.", "",
        "| slow sockets | addresses | closed by server | of which before the header deadline "
        "| still open | closed after s (min / p50 / max) | first answer | /health probe port | "
        "/health API port | chat request |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {record['opened']} | {record['plan']['addresses']} | "
        f"{record['closed_by_server']} | {record['closed_before_header_deadline']} | "
        f"{record['still_open']} | "
        f"{closed['min']} / {closed['p50']} / {closed['max']} | {record['first_answer']} | "
        f"{_probe_cell(probe)} | {_probe_cell(api)} | {record['api_request']} |", "",
    ])


def _probe_cell(probes: dict[str, Any]) -> str:
    if not probes["samples"]:
        return "-"
    latency = probes["latency_s"]
    return f"{probes['statuses']}, p50 {latency['p50']} s, max {latency['max']} s"


def write_results(record: dict[str, Any], folder: Path = RESULTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"slow-clients-{record['name']}.json"
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    path.with_suffix(".md").write_text(_markdown(record))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--probe-port", type=int)
    parser.add_argument("--key", required=True, help="a virtual key for the chat request")
    parser.add_argument("--model", required=True)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--addresses", type=int, default=50)
    parser.add_argument("--wait", type=float, default=60.0)
    parser.add_argument("--name", required=True)
    parser.add_argument("--settings", default="{}", help="JSON: the server settings, recorded")
    args = parser.parse_args(argv)
    plan = FloodPlan(args.port, args.probe_port, args.sockets, args.addresses, args.wait,
                     args.key, args.model)
    result = asyncio.run(run_flood(plan))
    path = write_results(summary(args.name, plan, result, json.loads(args.settings)))
    print(path.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
