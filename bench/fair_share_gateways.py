"""How far per-instance fairness drifts with two gateways in front of one engine.

One engine of ``--seats`` sequences (a fake engine whose extra requests wait first-come, as
vLLM's own queue, and which reports them as ``waiting``), two metered gateways in process
sharing it and one ledger, each with its own fair queue (remote-replica mode: each also
holds while the engine reports a queue). Weights 3:1. Two placements of the same load, both
tenants backlogged with 2 x seats streams each:

- spread: each tenant's streams split evenly over the two gateways (a load balancer);
- pinned: all of A's streams on gateway 1, all of B's on gateway 2.

``python -m bench.fair_share_gateways --seats 4 --phase-s 20``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.fair_share import MODEL, _run, _shares, _tenants, _weight
from bench.fair_share_fake import serve_app
from bench.fair_share_load import Client, keep_open
from bench.report import finish_run, start_run
from engine.fake import CharRenderer, FakeEngine
from engine.protocol import EngineOutput, EngineStats, GenerationRequest
from gateway.app import create_app
from gateway.bootstrap import build_state
from gateway.serving.registry import ModelRegistry, ServedModel
from gateway.settings import MeteringSettings, load_settings


@dataclass
class SharedEngine(FakeEngine):
    """Runs ``seats`` sequences at once; the rest wait first-come (vLLM's own queue)."""

    seats: int = 4
    replicas: tuple[Any, ...] = ()  # looks remote: gateways also hold while it queues
    _slots: asyncio.Semaphore | None = field(default=None, repr=False)
    _waiting: int = 0

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.seats)
        self._waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        try:
            async for out in super().generate(request):
                yield out
        finally:
            self._slots.release()

    def stats(self) -> EngineStats:
        base = super().stats()
        return EngineStats(running=base.running - self._waiting, waiting=self._waiting,
                           kv_cache_usage=0.0, prompt_tokens_total=base.prompt_tokens_total,
                           generation_tokens_total=base.generation_tokens_total,
                           unfinished_requests=base.unfinished_requests)


@contextlib.asynccontextmanager
async def two_gateways(engine: SharedEngine) -> AsyncIterator[tuple[str, str]]:
    folder = tempfile.mkdtemp(prefix="llmgw-fair-two-")
    base = load_settings(profile="test")
    settings = base.model_copy(update={
        "metering": MeteringSettings(database_url=f"sqlite+aiosqlite:///{folder}/ledger.db"),
        "planning": base.planning.model_copy(update={"executor": "thread"})})
    apps = [create_app(build_state(settings, ModelRegistry([ServedModel(
        MODEL, engine, CharRenderer(), seats=engine.seats)]), metered=True),
        manage_engines=False) for _ in range(2)]
    async with serve_app(apps[0]) as first, serve_app(apps[1]) as second:
        yield first, second


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    engine = SharedEngine(MODEL, reply="x" * 4096, token_delay_s=args.token_ms / 1000,
                          seats=args.seats)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    out: dict[str, Any] = {}
    async with two_gateways(engine) as urls, contextlib.AsyncExitStack() as stack:
        https = [await stack.enter_async_context(httpx.AsyncClient(
            base_url=url, timeout=httpx.Timeout(300.0), limits=limits)) for url in urls]
        keys = await _tenants(https[0])
        await _weight(https[0], "a", 3.0)
        one, two = (Client(http, MODEL, keys) for http in https)
        n = args.seats  # streams per tenant per gateway when spread (2 x seats in all)
        for name, jobs in (
            ("spread", [(one, "a", n), (two, "a", n), (one, "b", n), (two, "b", n)]),
            ("pinned", [(one, "a", 2 * n), (two, "b", 2 * n)]),
        ):
            tally = await _run(args.phase_s, *(
                (lambda t, s, c=c, who=who, k=k: keep_open(c, who, k, args.long_tokens, t, s))
                for c, who, k in jobs))
            out[name] = _shares(tally, args.phase_s, args.phase_s / 3)
    return out


def render(doc: dict[str, Any]) -> str:
    args = doc["args"]
    rows = [f"| {name} | {c['tokens'].get('a', 0)} | {c['tokens'].get('b', 0)} | "
            f"{c['share_a']} | {c['tokens_per_s']} |" for name, c in doc["placements"].items()]
    return "\n".join([
        "# Fair share with two gateways in front of one engine (issue #32)", "",
        f"A fake engine of {args['seats']} seats at {args['token_ms']} ms per token, extra "
        "requests first-come in the engine; two metered gateways in process, each with its "
        "own fair queue (per-instance, nothing shared). Weights A:B = 3:1 (goal: A's share "
        f"0.75); each tenant keeps {2 * int(args['seats'])} streams of 0.5-1.5 x "
        f"{args['long_tokens']} tokens open; shares over the last two thirds of "
        f"{args['phase_s']} s phases. Load average "
        f"{[round(x, 1) for x in doc['machine']['load_average_start']]} at the start, "
        f"{doc['load_average_end']} at the end.", "",
        "| placement | A tokens | B tokens | A's share | tokens/s |", "|---|---|---|---|---|",
        *rows, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=4)
    parser.add_argument("--token-ms", type=float, default=20.0)
    parser.add_argument("--phase-s", type=float, default=20.0)
    parser.add_argument("--long-tokens", type=int, default=64)
    args = parser.parse_args()
    doc = start_run(args)
    doc["placements"] = asyncio.run(measure(args))
    finish_run(doc, "fake-engine-fair-share-two-gateways", render)


if __name__ == "__main__":
    main()
