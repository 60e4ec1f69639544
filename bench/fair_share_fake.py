"""The fair-share benchmark's phases on the fake engine: the queue's own behaviour, apart
from a real engine's speed (which a busy shared machine makes crawl).

The fake engine streams every sequence at a fixed ``--token-ms`` whatever runs beside it,
so it models an engine of ``--seats`` sequences at a steady rate; the gateway's fair queue
(metered, SQLite ledger) is the only thing deciding who runs. Same phases as
``bench.fair_share``'s fair mode: B's TTFT while A saturates, and the shares at 1:1 and 3:1.

``python -m bench.fair_share_fake --seats 4 --phase-s 20``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

from bench.fair_share import MODEL, measure
from bench.report import finish_run, start_run
from engine.fake import CharRenderer, FakeEngine
from gateway.app import create_app
from gateway.bootstrap import build_state
from gateway.serving.registry import ModelRegistry, ServedModel
from gateway.settings import MeteringSettings, load_settings


@contextlib.asynccontextmanager
async def fake_gateway(seats: int, token_s: float) -> AsyncIterator[str]:
    folder = tempfile.mkdtemp(prefix="llmgw-fair-fake-")
    base = load_settings(profile="test")
    settings = base.model_copy(update={
        "metering": MeteringSettings(database_url=f"sqlite+aiosqlite:///{folder}/ledger.db"),
        "planning": base.planning.model_copy(update={"executor": "thread"})})
    engine = FakeEngine(MODEL, reply="x" * 4096, token_delay_s=token_s)
    registry = ModelRegistry([ServedModel(MODEL, engine, CharRenderer(), seats=seats)])
    app = create_app(build_state(settings, registry, metered=True), manage_engines=False)
    async with serve_app(app) as url:
        yield url


@contextlib.asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """``app`` served by uvicorn on a free loopback port; yields its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110  (uvicorn announces nothing)
        await asyncio.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with fake_gateway(args.seats, args.token_ms / 1000) as url:
        return await measure(url, True, args)


def render(doc: dict[str, Any]) -> str:
    args, fair = doc["args"], doc["fair"]
    ttft = fair["ttft"]
    rows = [f"| weights {r}:1 (goal {r / (r + 1):.2f}) | {c['tokens'].get('a', 0)} | "
            f"{c['tokens'].get('b', 0)} | {c['share_a']} | {c['tokens_per_s']} |"
            for r, c in ((1, fair["shares_1_1"]), (3, fair["shares_3_1"]))]
    return "\n".join([
        "# Fair share on the fake engine (issue #32)", "",
        f"The gateway's fair queue over a fake engine of {args['seats']} seats streaming every "
        f"sequence at {args['token_ms']} ms per token; metered gateway in process "
        f"(SQLite ledger), uvicorn on loopback. Load average "
        f"{[round(x, 1) for x in doc['machine']['load_average_start']]} at the start, "
        f"{doc['load_average_end']} at the end. Phases of {args['phase_s']} s.", "",
        f"Tenant A keeps {4 * int(args['seats'])} streams of 0.5-1.5 x {args['long_tokens']} "
        f"tokens open; B, one request of {args['short_tokens']} tokens at a time: "
        f"{ttft['n']} requests, TTFT p50 {ttft['p50_s']} s, p95 {ttft['p95_s']} s.", "",
        "| both backlogged | A tokens | B tokens | A's share | tokens/s |", "|---|---|---|---|---|",
        *rows, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=4)
    parser.add_argument("--token-ms", type=float, default=20.0)
    parser.add_argument("--phase-s", type=float, default=20.0)
    parser.add_argument("--unloaded-s", type=float, default=2.0)
    parser.add_argument("--long-tokens", type=int, default=64)
    parser.add_argument("--short-tokens", type=int, default=8)
    args = parser.parse_args()
    doc = start_run(args)
    doc["fair"] = asyncio.run(run(args))
    finish_run(doc, "fake-engine-fair-share", render)


if __name__ == "__main__":
    main()
