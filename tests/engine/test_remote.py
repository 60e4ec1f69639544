"""A remote replica over vLLM's own protocol (engine/remote.py, engine/vllm_http.py).

Against a stand-in for vLLM's server on loopback (tests/engine/vllm_fake.py); the real vLLM
server is tests/e2e/test_remote_replicas.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from engine import remote
from engine.errors import EngineRequestError, EngineUnavailableError
from engine.fake import FakeEngine
from engine.protocol import (
    EmbeddingRequest,
    EngineOutput,
    GenerationRequest,
    SamplingSpec,
    StructuredOutput,
)
from engine.remote import RemoteEngine, ReplicaAccess
from engine.vllm_convert import sampling_json
from tests.engine.vllm_fake import FakeVllm, RunningReplica, fake_vllms

KEY = "replica-key-0123"


def request(rid: str = "r1", max_tokens: int = 64, n: int = 1, logprobs: int | None = None,
            priority: int = 0) -> GenerationRequest:
    return GenerationRequest(rid, tuple(ord(c) for c in "hello"),
                             SamplingSpec(max_tokens=max_tokens, n=n, stop=("x",),
                                          logprobs=logprobs),
                             priority=priority, cache_salt="tenant-a")


@asynccontextmanager
async def replica(fake: FakeVllm, access: ReplicaAccess | None = None,
                  ) -> AsyncIterator[tuple[RemoteEngine, RunningReplica]]:
    async with fake_vllms(fake) as [running], httpx.AsyncClient() as client:
        yield RemoteEngine(running.url, "m", 2048, client,
                           access or ReplicaAccess(api_key=KEY)), running


async def collect(engine: RemoteEngine, req: GenerationRequest) -> list[EngineOutput]:
    return [out async for out in engine.generate(req)]


def per_choice(outputs: list[EngineOutput], n: int) -> list[tuple[list[int], str, str | None]]:
    result: list[tuple[list[int], str, str | None]] = []
    for index in range(n):
        deltas = [d for out in outputs for d in out.choices if d.index == index]
        result.append(([t for d in deltas for t in d.token_ids], "".join(d.text for d in deltas),
                       deltas[-1].finish_reason))
    return result


async def test_generate_streams_the_replicas_token_ids_text_and_finish_per_choice() -> None:
    async with replica(FakeVllm(FakeEngine("m"), api_key=KEY, cached_tokens=3)) as (engine, _):
        via_http = await collect(engine, request(n=2, logprobs=1))
        direct = [out async for out in FakeEngine("m").generate(request(n=2, logprobs=1))]
        assert per_choice(via_http, 2) == per_choice(direct, 2)
        assert [o.finished for o in via_http] == [False] * (len(via_http) - 1) + [True]
        final = via_http[-1]
        assert (final.prompt_tokens, final.cached_prompt_tokens) == (5, 3)
        logprobs = [lp for out in via_http for d in out.choices for lp in d.logprobs or ()]
        expected = [lp for out in direct for d in out.choices for lp in d.logprobs or ()]
        assert logprobs == expected
        assert engine.outstanding == 0


async def test_generate_when_requests_follow_each_other_then_they_reuse_one_connection(
) -> None:
    # The stream is read to its end after [DONE]: a response closed half-read cannot go back
    # to the pool, and a new TCP (in production TLS) connection per request costs the gateway
    # CPU and the replica a handshake.
    fake = FakeVllm(FakeEngine("m"), api_key=KEY)
    async with replica(fake) as (engine, _):
        for i in range(5):
            assert (await collect(engine, request(f"r{i}", max_tokens=4)))[-1].finished
    assert fake.requests_total == 5 and len(fake.peers) == 1, fake.peers


async def test_request_carries_token_ids_sampling_salt_and_the_api_key() -> None:
    fake = FakeVllm(FakeEngine("m"), api_key=KEY)
    async with replica(fake) as (engine, _):
        req = request(priority=1)
        await collect(engine, req)
        body = fake.bodies[-1]
        assert body["token_ids"] == list(req.prompt_token_ids)
        assert body["sampling_params"] == sampling_json(req.sampling)
        assert body["cache_salt"] == "tenant-a" and body["stream"] is True
        assert "priority" not in body  # the replica does not schedule by priority
        assert fake.headers[-1]["authorization"] == f"Bearer {KEY}"
    fake = FakeVllm(FakeEngine("m"), api_key=KEY)
    async with replica(fake, ReplicaAccess(KEY, priority_scheduling=True)) as (engine, _):
        await collect(engine, request(priority=1))
        assert fake.bodies[-1]["priority"] == 1


async def test_without_the_replicas_key_then_unavailable_naming_the_key() -> None:
    fake = FakeVllm(FakeEngine("m"), api_key=KEY)
    async with replica(fake, ReplicaAccess(api_key="wrong")) as (engine, _):
        with pytest.raises(EngineUnavailableError, match="API key"):
            await collect(engine, request())
        assert fake.requests_total == 0


async def test_refused_request_is_a_request_error_naming_the_parameter() -> None:
    async with replica(FakeVllm(FakeEngine("m"), api_key=KEY)) as (engine, _):
        with pytest.raises(EngineRequestError, match="context length") as info:
            await collect(engine, request(max_tokens=4096))  # the fake replica's context: 2048
        assert info.value.param == "max_tokens"


async def test_abort_ends_the_stream_with_the_tokens_made_so_far() -> None:
    fake_engine = FakeEngine("m", reply="a long answer " * 20, token_delay_s=0.01)
    async with replica(FakeVllm(fake_engine, api_key=KEY)) as (engine, _):
        stream = engine.generate(request("abort-me", max_tokens=500))
        outputs = [await anext(stream)]
        await engine.abort("abort-me")
        outputs += [out async for out in stream]
        assert fake_engine.aborted == ["abort-me"]
        final = outputs[-1]
        assert final.finished and final.choices[-1].finish_reason == "abort"
        tokens = sum(len(d.token_ids) for out in outputs for d in out.choices)
        assert 0 < tokens < len(fake_engine.reply)


async def test_abort_the_replica_ignores_then_the_stream_is_closed_after_a_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(remote, "ABORT_GRACE_S", 0.2)
    fake_engine = FakeEngine("m", reply="b" * 400, token_delay_s=0.02)
    async with replica(FakeVllm(fake_engine, api_key=KEY, ignore_aborts=True)) as (engine, _):
        stream = engine.generate(request("stubborn", max_tokens=500))
        await anext(stream)
        await engine.abort("stubborn")
        rest = [out async for out in stream]
        assert rest[-1].finished and rest[-1].choices[-1].finish_reason == "abort"
        for _ in range(200):  # closing the stream aborted it on the replica
            if fake_engine.stats().unfinished_requests == 0:
                break
            await asyncio.sleep(0.01)
        assert fake_engine.stats().unfinished_requests == 0


async def test_stream_closed_by_the_gateway_then_the_replica_aborts() -> None:
    fake_engine = FakeEngine("m", reply="c" * 300, token_delay_s=0.02)
    async with replica(FakeVllm(fake_engine, api_key=KEY)) as (engine, _):
        stream = engine.generate(request("gone"))
        await anext(stream)
        await stream.aclose()
        for _ in range(200):
            if fake_engine.stats().unfinished_requests == 0:
                break
            await asyncio.sleep(0.01)
        assert fake_engine.stats().unfinished_requests == 0
        await asyncio.sleep(0.1)
        assert fake_engine.stats().generation_tokens_total < 50  # stopped, not run to the end
        assert engine.outstanding == 0


async def test_replica_failure_mid_stream_is_unavailable_after_the_tokens_it_sent() -> None:
    async with replica(FakeVllm(FakeEngine("m", fail_after_tokens=3), api_key=KEY)) as (
            engine, _):
        outputs: list[EngineOutput] = []
        with pytest.raises(EngineUnavailableError, match="mid-stream"):
            async for out in engine.generate(request()):
                outputs.append(out)
        assert len(outputs) == 3


async def test_probe_reads_health_and_load_from_metrics() -> None:
    fake = FakeVllm(FakeEngine("m"), api_key=KEY, other_load=4)
    async with replica(fake) as (engine, _):
        assert await engine.probe()
        assert engine.stats().running == 4 and engine.load == 4
        fake.healthy = False
        assert not await engine.probe()
        assert engine.last_error == "/health answered 503"


async def test_embed_sends_token_ids_and_returns_the_replicas_vector() -> None:
    fake = FakeVllm(FakeEngine("e", embedding_size=6), api_key=KEY)
    async with replica(fake) as (engine, _):
        out = await engine.embed(EmbeddingRequest("e1", (5, 6, 7), dimensions=4))
        assert out.prompt_tokens == 3 and len(out.embedding) == 4
        assert fake.bodies[-1]["input"] == [5, 6, 7]
        assert fake.bodies[-1]["dimensions"] == 4


def test_sampling_json_names_vllms_own_fields() -> None:
    spec = SamplingSpec(max_tokens=8, structured=StructuredOutput("choice", choices=("a", "b")),
                        logit_bias=((5, -100.0),), allowed_token_ids=(1, 2))
    fields = sampling_json(spec)
    assert fields["structured_outputs"] == {"choice": ["a", "b"]}
    assert fields["logit_bias"] == {5: -100.0}
    assert "stop" not in fields and "seed" not in fields  # None: vLLM's own default


async def test_unreachable_replica_then_unavailable_and_not_ready() -> None:
    async with httpx.AsyncClient() as client:
        engine = RemoteEngine("http://127.0.0.1:9", "m", 2048, client)
        assert not await engine.probe()
        with pytest.raises(EngineUnavailableError):
            await collect(engine, request())


@pytest.mark.slow  # imports vLLM's protocol models (no engine starts)
def test_the_body_is_vllms_own_generate_request_with_our_sampling_params() -> None:
    from vllm.entrypoints.scale_out.token_in_token_out.protocol import GenerateRequest

    from engine.vllm_convert import to_sampling_params
    from engine.vllm_http import generate_body

    spec = SamplingSpec(max_tokens=9, temperature=0.5, n=2, stop=("x",), seed=3, logprobs=2,
                        logit_bias=((5, -100.0),), top_k=4, min_p=0.1, min_tokens=1,
                        structured=StructuredOutput("json", '{"type":"object"}'),
                        stop_token_ids=(2,), bad_words=("no",), allowed_token_ids=(1, 2, 5))
    body = generate_body(GenerationRequest("r", (1, 2, 3), spec, 1, "salt"), priority=True)
    parsed = GenerateRequest.model_validate(body)
    ours = to_sampling_params(spec)
    for name in sampling_json(spec):
        assert getattr(parsed.sampling_params, name) == getattr(ours, name), name
    assert (parsed.token_ids, parsed.cache_salt, parsed.priority) == ([1, 2, 3], "salt", 1)
    assert parsed.output_mode == "text" and parsed.stream


@pytest.mark.parametrize("salt", ["", "a/b", "t@x", "x" * 129])
def test_a_salt_vllms_server_would_refuse_is_refused_before_it_is_sent(salt: str) -> None:
    with pytest.raises(ValueError, match="cache_salt"):
        GenerationRequest("r", (1,), SamplingSpec(max_tokens=1), cache_salt=salt)


@asynccontextmanager
async def dropping_proxy(target: str, drop: set[int]) -> AsyncIterator[str]:
    """A TCP proxy to ``target`` that closes a connection, unanswered, when the request whose
    number on that connection (from 1) is in ``drop`` arrives: a keep-alive the server ended
    just as the client reused it. Yields the proxy's URL."""
    host, port = target.removeprefix("http://").split(":")

    async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        upstream, to_upstream = await asyncio.open_connection(host, int(port))
        back = asyncio.create_task(pump(upstream, to_client))
        requests = 0
        try:
            while data := await client.read(65536):
                if data.startswith((b"POST ", b"GET ")):
                    requests += 1
                    if requests in drop:
                        return
                to_upstream.write(data)
                await to_upstream.drain()
        finally:
            back.cancel()
            to_upstream.close()
            to_client.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


@asynccontextmanager
async def behind_dropping_proxy(fake: FakeVllm, drop: set[int]) -> AsyncIterator[RemoteEngine]:
    """A RemoteEngine reaching ``fake`` through ``dropping_proxy(..., drop)``."""
    async with fake_vllms(fake) as [running], dropping_proxy(running.url, drop) as url, \
            httpx.AsyncClient() as client:
        yield RemoteEngine(url, "m", 2048, client, ReplicaAccess(api_key=KEY))


async def test_generate_when_a_pooled_connection_was_closed_by_the_replica_then_sent_again(
) -> None:
    fake = FakeVllm(FakeEngine("m"), api_key=KEY)
    async with behind_dropping_proxy(fake, {2}) as engine:
        for i in range(3):  # the 2nd and 3rd each find their pooled connection closed
            assert (await collect(engine, request(f"r{i}", max_tokens=4)))[-1].finished
    assert fake.requests_total == 3  # each generated once


async def test_generate_when_a_fresh_connection_is_closed_too_then_unavailable_not_retried(
) -> None:
    fake = FakeVllm(FakeEngine("m"), api_key=KEY)
    async with behind_dropping_proxy(fake, {1}) as engine:
        with pytest.raises(EngineUnavailableError):
            await collect(engine, request("r1", max_tokens=4))
    assert fake.requests_total == 0
