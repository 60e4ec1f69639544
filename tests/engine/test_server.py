"""The engine server and its client (engine/server.py, engine/remote.py, engine/wire.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json

import httpx
import pytest

from engine.errors import EngineRequestError, EngineUnavailableError
from engine.fake import FakeEngine
from engine.protocol import (
    EngineOutput,
    EngineStats,
    GenerationRequest,
    SamplingSpec,
    StructuredOutput,
)
from engine.remote import RemoteEngine
from engine.wire import encode, merge_stats, output_from_wire, request_from_wire
from tests.engine.replica_servers import fake_replicas


def request(rid: str = "r1", max_tokens: int = 64, logprobs: int | None = None,
            prompt: str = "hello") -> GenerationRequest:
    return GenerationRequest(rid, tuple(ord(c) for c in prompt),
                             SamplingSpec(max_tokens=max_tokens, n=2, stop=("x",),
                                          logprobs=logprobs), cache_salt="tenant-a")


async def collect(engine: FakeEngine | RemoteEngine, req: GenerationRequest) -> list[EngineOutput]:
    return [out async for out in engine.generate(req)]


def test_wire_round_trip_keeps_every_field() -> None:
    req = request(logprobs=2)
    assert request_from_wire(encode(req)) == req
    constrained = dataclasses.replace(req, sampling=dataclasses.replace(
        req.sampling, structured=StructuredOutput("json", '{"type":"object"}'),
        logit_bias=((5, -100.0), (9, 2.5)), top_k=4, stop_token_ids=(2,),
        allowed_token_ids=(1, 2, 3), bad_words=("x",)))
    assert request_from_wire(json.loads(json.dumps(encode(constrained)))) == constrained
    choice = dataclasses.replace(req, sampling=dataclasses.replace(
        req.sampling, structured=StructuredOutput("choice", choices=("yes", "no"))))
    assert request_from_wire(json.loads(json.dumps(encode(choice)))) == choice
    out = EngineOutput("r1", 5, 3, (), True)
    assert output_from_wire(encode(out)) == out


async def test_remote_generate_streams_the_engines_outputs_exactly() -> None:
    async with fake_replicas(FakeEngine("m")) as [replica], httpx.AsyncClient() as client:
        remote = RemoteEngine(replica.url, "m", 2048, client)
        via_http = await collect(remote, request(logprobs=1))
        direct = await collect(FakeEngine("m"), request(logprobs=1))
        assert via_http == direct
        assert via_http[-1].finished and via_http[-1].choices[0].finish_reason == "stop"
        assert remote.outstanding == 0


async def test_remote_when_request_rejected_then_engine_request_error() -> None:
    async with fake_replicas(FakeEngine("m")) as [replica], httpx.AsyncClient() as client:
        bad = {"request_id": "r", "prompt_token_ids": [1], "sampling": {"max_tokens": 0}}
        response = await client.post(f"{replica.url}/v1/generate", json=bad)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "request"

        async def reject(_req: GenerationRequest):  # type: ignore[no-untyped-def]
            raise EngineRequestError("prompt too long")
            yield  # pragma: no cover

        replica.engine.generate = reject  # type: ignore[method-assign]
        with pytest.raises(EngineRequestError, match="prompt too long"):
            await collect(RemoteEngine(replica.url, "m", 2048, client), request())


async def test_stream_when_closed_by_client_then_engine_aborts() -> None:
    engine = FakeEngine("m", reply="a long answer " * 20, token_delay_s=0.02)
    async with fake_replicas(engine) as [replica], httpx.AsyncClient() as client:
        remote = RemoteEngine(replica.url, "m", 2048, client)
        stream = remote.generate(request("abort-me"))
        assert (await anext(stream)).choices
        assert replica.state.in_flight == {"abort-me"}
        assert engine.stats().unfinished_requests == 1
        await stream.aclose()
        for _ in range(500):
            if not replica.state.in_flight:
                break
            await asyncio.sleep(0.01)
        assert replica.state.in_flight == set()
        assert engine.stats().unfinished_requests == 0  # stopped, not run to the end
        assert engine.stats().generation_tokens_total < len(engine.reply) * 2


async def test_abort_route_aborts_a_running_request() -> None:
    engine = FakeEngine("m", reply="b" * 300, token_delay_s=0.02)
    async with fake_replicas(engine) as [replica], httpx.AsyncClient() as client:
        remote = RemoteEngine(replica.url, "m", 2048, client)
        stream = remote.generate(request("r-abort"))
        await anext(stream)
        await remote.abort("r-abort")
        assert "r-abort" in engine.aborted
        with contextlib.suppress(EngineUnavailableError):  # the stream ends unfinished
            async for _ in stream:
                pass


async def test_replica_failure_mid_stream_is_reported_in_band() -> None:
    engine = FakeEngine("m", fail_after_tokens=3)
    async with fake_replicas(engine) as [replica], httpx.AsyncClient() as client:
        remote = RemoteEngine(replica.url, "m", 2048, client)
        outputs: list[EngineOutput] = []
        with pytest.raises(EngineUnavailableError, match="mid-stream"):
            async for out in remote.generate(request()):
                outputs.append(out)
        assert len(outputs) == 3


async def test_ready_reports_stats_and_turns_503_when_draining() -> None:
    async with fake_replicas(FakeEngine("m")) as [replica], httpx.AsyncClient() as client:
        remote = RemoteEngine(replica.url, "m", 2048, client)
        await collect(remote, request())
        assert await remote.probe()
        assert remote.stats().generation_tokens_total == engine_total(replica.engine)
        replica.state.draining = True
        assert not await remote.probe()
        response = await client.post(f"{replica.url}/v1/generate", json=encode(request()))
        assert response.status_code == 503
        assert (await client.get(f"{replica.url}/health")).status_code == 200


def engine_total(engine: FakeEngine) -> int:
    return engine.stats().generation_tokens_total


async def test_metrics_expose_queue_depth_for_autoscaling() -> None:
    async with fake_replicas(FakeEngine("m")) as [replica], httpx.AsyncClient() as client:
        text = (await client.get(f"{replica.url}/metrics")).text
        assert 'llmgw_engine_requests_waiting{model="m"} 0.0' in text
        assert "llmgw_engine_generation_tokens_total" in text


async def test_remote_when_replica_unreachable_then_unavailable() -> None:
    async with httpx.AsyncClient() as client:
        remote = RemoteEngine("http://127.0.0.1:9", "m", 2048, client)
        assert not await remote.probe()
        with pytest.raises(EngineUnavailableError):
            await collect(remote, request())


def test_merged_stats_add_counts_and_average_usage() -> None:
    a = EngineStats(1, 2, 0.2, 10, 20, 3, spec_accepted_per_position=(1, 2))
    b = EngineStats(3, 0, 0.4, 5, 5, 3, spec_accepted_per_position=(1,))
    merged = merge_stats([a, b])
    assert (merged.running, merged.waiting, merged.prompt_tokens_total) == (4, 2, 15)
    assert merged.kv_cache_usage == pytest.approx(0.3)
    assert merged.spec_accepted_per_position == (2, 2)
