"""``python -m bench.gateway_overhead.micro --before-run FILE``: one hot-path change at a time,
in one process, its CPU time before and after.

End to end (``bench.gateway_overhead.ab``) a change of a few microseconds per token or a
millisecond per request drowns in a shared 2-core machine's noise. Here each section runs
the old and the new code of one path in the same process, in alternating blocks, and
reports this process's CPU time per operation (median over blocks):

- ``keys``: ``KeyAuthenticator.authenticate`` on a live key in PostgreSQL, the cache of
  verified keys off (TTL 0: a database lookup of the key and its tenant every time) and on.
- ``stall``: ``RequestRun`` reading a fake engine's outputs, the run module given by
  ``--before-run`` (an ``asyncio.timeout`` per output) and the tree's (one stall timer).
- ``send``: an SSE response sending chunks to a send that never blocks, sse-starlette's
  ``EventSourceResponse`` (a cancel scope per send) and ``StreamResponse`` (one timer).
- ``encode`` / ``decode``: a token's chunk to JSON (``json_data``) and a replica's chunk from
  JSON (``StreamDecoder``), the standard library's ``json`` and orjson.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.gateway_overhead.__main__ import POSTGRES, _database
from bench.machine import describe
from bench.report import save_run

Op = Callable[[], Awaitable[None]]


async def _per_op(before: Op, after: Op, ops: int, blocks: int) -> dict[str, float]:
    """Median CPU microseconds per op of each side, blocks alternating."""
    spent: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(blocks):
        for side, op in (("before", before), ("after", after)):
            start = time.process_time()
            for _ in range(ops):
                await op()
            spent[side].append((time.process_time() - start) / ops * 1e6)
    out = {f"{side}_us": round(statistics.median(values), 2) for side, values in spent.items()}
    out["after_over_before"] = round(out["after_us"] / out["before_us"], 3)
    return out


async def keys(blocks: int) -> dict[str, float]:
    from gateway.auth.key_auth import KeyAuthenticator
    from gateway.auth.key_cache import KeyCache
    from gateway.auth.key_store import KeyStore
    from gateway.metering.database import create_database_engine, migrate

    name = f"llmgw_micro_{uuid.uuid4().hex[:10]}"
    await _database(name, create=True)
    engine = create_database_engine(f"postgresql+asyncpg://{POSTGRES}/{name}")
    try:
        await migrate(engine)
        store = KeyStore(engine)
        _, token = await store.create("bench")
        header = f"Bearer {token}"
        off = KeyAuthenticator(True, "admin", store, cache=KeyCache(0, 1))
        on = KeyAuthenticator(True, "admin", store, cache=KeyCache(5, 100))

        async def before() -> None:
            await off.authenticate(header)

        async def after() -> None:
            await on.authenticate(header)

        return await _per_op(before, after, 200, blocks)
    finally:
        await engine.dispose()
        await _database(name, create=False)


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def stall(before_run: Path, blocks: int) -> dict[str, float]:
    from engine.fake import FakeEngine
    from engine.protocol import GenerationRequest, SamplingSpec
    from gateway.serving import run as current
    from gateway.serving.accounting import _UnmeteredTicket

    old = _load(before_run, "bench_run_before")
    tokens = 2000
    engine = FakeEngine(reply="x" * tokens)

    def one(module: ModuleType) -> Op:
        async def op() -> None:
            request = GenerationRequest(uuid.uuid4().hex, (1, 2, 3), SamplingSpec(tokens))
            run = module.RequestRun(engine, [request], _UnmeteredTicket(), 60.0)
            async for _ in run.outputs():
                pass
            await run.close()
        return op

    result = await _per_op(one(old), one(current), 1, blocks)
    return {key: (round(value / tokens, 3) if key.endswith("_us") else value)
            for key, value in result.items()}  # per output


async def send(blocks: int) -> dict[str, float]:
    from sse_starlette import EventSourceResponse

    from gateway.streaming.response import StreamResponse

    chunks = 2000

    async def events() -> AsyncIterator[dict[str, str]]:
        for _ in range(chunks):
            yield {"data": '{"choices":[{"delta":{"content":"x"}}]}'}

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # never disconnects
        return {}

    async def sink(message: Any) -> None:
        del message

    scope = {"type": "http", "method": "POST"}

    def one(kind: Any) -> Op:
        async def op() -> None:
            await kind(events(), sep="\n", ping=15, send_timeout=30)(scope, receive, sink)
        return op

    result = await _per_op(one(EventSourceResponse), one(StreamResponse), 1, blocks)
    return {key: (round(value / chunks, 3) if key.endswith("_us") else value)
            for key, value in result.items()}  # per chunk


# One streamed token: the chunk the gateway sends and the chunk a replica sends it.
CHUNK = {"id": "chatcmpl-8f3b2c1d9e0a4b7c", "object": "chat.completion.chunk",
         "created": 1765140000, "model": "smollm2-135m-instruct", "system_fingerprint": None,
         "choices": [{"index": 0, "delta": {"content": " Paris"}, "logprobs": None,
                      "finish_reason": None}]}
REPLICA_CHUNK = (b'{"request_id":"generate-tokens-1","usage":null,"output_mode":"text","choices":'
                 b'[{"index":0,"finish_reason":null,"stop_reason":null,"token_ids":[12345],'
                 b'"routed_experts":null,"sampling_mask":null,"weight_versions":null,'
                 b'"text":" Paris","logprobs":null}]}')


async def encode(blocks: int) -> dict[str, float]:
    """A token's SSE chunk as JSON: the standard library, then ``json_data`` (orjson)."""
    import json

    from gateway.serving.formatting.responder import json_data

    async def before() -> None:
        json.dumps(CHUNK, ensure_ascii=False, separators=(",", ":"))

    async def after() -> None:
        json_data(CHUNK)

    return await _per_op(before, after, 20_000, blocks)


async def decode(blocks: int) -> dict[str, float]:
    """A replica's streamed chunk read: the standard library, then orjson (StreamDecoder's)."""
    import json

    import orjson

    async def before() -> None:
        json.loads(REPLICA_CHUNK)

    async def after() -> None:
        orjson.loads(REPLICA_CHUNK)

    return await _per_op(before, after, 20_000, blocks)


def render(doc: dict[str, Any]) -> str:
    lines = [f"# {doc['title']} ({doc['date']})", "",
             f"Machine: {doc['machine']['cpu']}, {doc['machine']['cores_usable']} cores; load "
             f"average at start {doc['machine']['load_average_start']}, at end "
             f"{doc['load_average_end']}. {doc['note']}", "",
             "CPU time of this one process per operation, median over alternating blocks "
             f"({doc['blocks']} each).", "",
             "| path | unit | before (us) | after (us) | after / before |", "|---|---|---|---|---|"]
    units = {"keys": "request", "stall": "engine output", "send": "SSE chunk",
             "encode": "chunk to JSON", "decode": "replica chunk from JSON"}
    for section, row in doc["sections"].items():
        lines.append(f"| {section} | {units[section]} | {row['before_us']} | {row['after_us']} "
                     f"| {row['after_over_before']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="keys,stall,send")
    parser.add_argument("--before-run", type=Path, help="the old gateway/serving/run.py")
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--kind", default="gateway-overhead-micro")
    parser.add_argument("--title", default="Hot-path changes, in process")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    machine = describe()
    wanted = args.sections.split(",")
    sections: dict[str, dict[str, float]] = {}
    if "keys" in wanted:
        sections["keys"] = asyncio.run(keys(args.blocks))
    if "stall" in wanted:
        sections["stall"] = asyncio.run(stall(args.before_run, args.blocks))
    if "send" in wanted:
        sections["send"] = asyncio.run(send(args.blocks))
    for name, section in (("encode", encode), ("decode", decode)):
        if name in wanted:
            sections[name] = asyncio.run(section(args.blocks))
    doc = {"date": date.today().isoformat(), "machine": machine, "title": args.title,
           "note": args.note, "blocks": args.blocks, "sections": sections,
           "load_average_end": list(os.getloadavg())}
    print(save_run(doc, args.kind, render).read_text())


if __name__ == "__main__":
    main()
