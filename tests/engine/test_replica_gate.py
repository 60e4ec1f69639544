"""The replica gate (engine/replica_gate.py): the only door of a replica's vLLM.

Against stand-ins on loopback (tests/engine/gate_helpers.py records every request that reaches
it; tests/engine/vllm_fake.py speaks vLLM's protocol); the gate in front of a real vLLM is
tests/e2e/test_remote_replicas.py.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import subprocess
import sys

import httpx
import pytest

from engine.fake import FakeEngine
from engine.launcher import GateBind
from engine.protocol import EmbeddingRequest, GenerationRequest, SamplingSpec
from engine.remote import RemoteEngine, ReplicaAccess
from engine.replica_gate import GatePolicy, Verdict
from tests.conftest import REPO, free_port
from tests.engine.gate_helpers import (
    KEY,
    Recorder,
    gate,
    gated,
    raw_request,
    recorder_app,
    serving,
)
from tests.engine.vllm_fake import FakeVllm, fake_vllms

BEARER = {"authorization": f"Bearer {KEY}"}
# vLLM 0.32's routes the gateway never uses: several spend tokens without vLLM's key.
SIDE_DOORS = [
    ("POST", "/invocations"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions"),
    ("POST", "/v1/responses"), ("POST", "/tokenize"), ("POST", "/detokenize"),
    ("POST", "/pooling"), ("POST", "/classify"), ("POST", "/score"), ("POST", "/rerank"),
    ("POST", "/v1/embeddings"), ("POST", "/scale_elastic_ep"), ("POST", "/pause"),
    ("POST", "/sleep"), ("GET", "/v1/models"), ("GET", "/ping"), ("GET", "/load"),
    ("GET", "/version"), ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/server_info"),
    ("GET", "/inference/v1/generate"), ("POST", "/health"), ("POST", "/metrics"),
    ("DELETE", "/inference/v1/generate"), ("OPTIONS", "/inference/v1/generate"),
]


def test_policy_admits_the_models_routes_with_the_key_and_the_probes_without() -> None:
    policy = GatePolicy("generate", KEY)
    key = f"Bearer {KEY}".encode()
    assert policy.verdict("POST", "/inference/v1/generate", key) is Verdict.FORWARD
    assert policy.verdict("POST", "/inference/v1/abort_requests", key) is Verdict.FORWARD
    assert policy.verdict("POST", "/inference/v1/generate", None) is Verdict.UNAUTHORIZED
    assert policy.verdict("GET", "/health", None) is Verdict.FORWARD
    assert policy.verdict("GET", "/metrics", None) is Verdict.FORWARD
    assert policy.verdict("POST", "/v1/embeddings", key) is Verdict.NOT_FOUND
    pooling = GatePolicy("embed", KEY)
    assert pooling.verdict("POST", "/v1/embeddings", key) is Verdict.FORWARD
    assert pooling.verdict("POST", "/inference/v1/generate", key) is Verdict.NOT_FOUND


@pytest.mark.parametrize("header", [
    None, b"", b"Bearer", b"Bearer ", b"Bearer wrong", f"Basic {KEY}".encode(), KEY.encode(),
    f"Bearer {KEY[:-1]}".encode(), f"Bearer {KEY}x".encode(), f"Bearer  {KEY}".encode(),
])
def test_policy_when_the_key_is_missing_or_wrong_then_unauthorized(header: bytes | None) -> None:
    verdict = GatePolicy("generate", KEY).verdict("POST", "/inference/v1/generate", header)
    assert verdict is Verdict.UNAUTHORIZED


def test_policy_reads_the_scheme_in_any_case_as_vllm_does() -> None:
    assert GatePolicy("generate", KEY).authorized(f"bearer {KEY}".encode())


def test_policy_compares_key_digests_in_constant_time_and_never_shows_the_key() -> None:
    source = inspect.getsource(GatePolicy.authorized)
    assert "hmac.compare_digest" in source and "==" not in source.replace("scheme.lower() ==", "")
    assert KEY not in repr(GatePolicy("generate", KEY))


def test_policy_refuses_a_blank_key_an_unknown_task_and_a_keyless_public_bind() -> None:
    with pytest.raises(ValueError, match="blank"):
        GatePolicy("generate", " ")
    with pytest.raises(ValueError, match="task"):
        GatePolicy("classify", KEY)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="VLLM_API_KEY"):
        GateBind("0.0.0.0", 8001, 8002, GatePolicy("generate"))
    assert GateBind("127.0.0.1", 8001, 8002, GatePolicy("generate")).upstream == (
        "http://127.0.0.1:8002")


async def test_side_doors_with_or_without_the_key_then_404_and_vllm_sees_nothing() -> None:
    recorder = Recorder()
    async with gated(recorder) as (url, client):
        for (method, path), headers in itertools.product(SIDE_DOORS, ({}, BEARER)):
            response = await client.request(method, url + path, headers=headers,
                                            json={"prompt": "hi"} if method == "POST" else None)
            assert response.status_code == 404, (method, path, headers)
            assert response.json()["error"]["code"] == 404
    assert recorder.seen == []


@pytest.mark.parametrize("head", [
    "POST /inference/v1/generate/ HTTP/1.1", "POST //inference/v1/generate HTTP/1.1",
    "POST /inference/v1/./generate HTTP/1.1", "POST /inference/v1/x/../generate HTTP/1.1",
    "POST /Inference/v1/generate HTTP/1.1", "POST /inference/v1/generate%2F HTTP/1.1",
    "POST http://other/invocations HTTP/1.1", "POST /invocations?/inference/v1/generate HTTP/1.1",
])
async def test_paths_are_matched_exactly_then_any_other_spelling_is_404(head: str) -> None:
    recorder = Recorder()
    async with serving(recorder_app(recorder)) as (_, port), gate(
            GatePolicy("generate", KEY), port) as url:
        status = await raw_request(url, f"{head}\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                                   "Content-Length: 2\r\nConnection: close\r\n", b"{}")
    assert status == 404
    assert recorder.seen == []


async def test_a_keyed_path_without_the_key_then_401_and_vllm_sees_nothing() -> None:
    recorder = Recorder()
    async with gated(recorder) as (url, client):
        for headers in ({}, {"authorization": "Bearer wrong"}):
            response = await client.post(url + "/inference/v1/generate", json={},
                                         headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
    assert recorder.seen == []


async def test_forwarded_request_keeps_body_and_key_drops_query_and_hop_by_hop_headers() -> None:
    recorder = Recorder()
    recorder.go.set()
    async with gated(recorder) as (url, client):
        headers = {**BEARER, "x-request-id": "r1", "te": "trailers", "keep-alive": "5"}
        response = await client.post(url + "/inference/v1/generate?debug=1", headers=headers,
                                     content=b'{"token_ids": [1]}')
        assert response.status_code == 200
        assert response.text == "data: first\n\ndata: last\n\ndata: [DONE]\n\n"
        assert response.headers["x-upstream"] == "yes"
        assert response.headers["content-type"].startswith("text/event-stream")
        health = await client.get(url + "/health")
    seen = recorder.seen[0]
    assert (seen.method, seen.path, seen.query, seen.body) == (
        "POST", "/inference/v1/generate", "", b'{"token_ids": [1]}')
    assert seen.headers["authorization"] == f"Bearer {KEY}"  # vLLM checks it too
    assert seen.headers["x-request-id"] == "r1"
    assert "te" not in seen.headers and "keep-alive" not in seen.headers
    assert health.text == "GET /health" and recorder.seen[1].headers.get("authorization") is None


async def test_stream_chunks_pass_as_they_come_never_buffered() -> None:
    recorder = Recorder()
    async with gated(recorder) as (url, client), client.stream(
            "POST", url + "/inference/v1/generate", json={}, headers=BEARER) as response:
        chunks = response.aiter_raw()
        # The stand-in holds its second chunk until the first has reached this client.
        assert await asyncio.wait_for(anext(chunks), 10) == recorder.first
        recorder.go.set()
        assert b"".join([c async for c in chunks]) == recorder.last


async def test_client_gone_mid_stream_then_the_upstream_stream_is_closed() -> None:
    recorder = Recorder()  # never told to go on: only a disconnect ends its stream
    async with gated(recorder) as (url, client):
        async with client.stream("POST", url + "/inference/v1/generate", json={},
                                 headers=BEARER) as response:
            assert await asyncio.wait_for(anext(response.aiter_raw()), 10) == recorder.first
        await asyncio.wait_for(recorder.closed.wait(), 10)


async def test_engine_failing_mid_stream_then_the_clients_stream_breaks() -> None:
    recorder = Recorder(fail_mid_stream=True)
    async with gated(recorder) as (url, client), client.stream(
            "POST", url + "/inference/v1/generate", json={}, headers=BEARER) as response:
        chunks = response.aiter_raw()
        assert await anext(chunks) == recorder.first
        recorder.go.set()
        with pytest.raises(httpx.HTTPError):  # not a clean end of stream
            async for _ in chunks:
                pass


async def test_engine_unreachable_then_503_on_health_and_on_generate() -> None:
    async with gate(GatePolicy("generate", KEY), free_port()) as url, httpx.AsyncClient() as c:
        assert (await c.get(url + "/health")).status_code == 503
        response = await c.post(url + "/inference/v1/generate", json={}, headers=BEARER)
        assert response.status_code == 503
        assert "127.0.0.1" not in response.text


def request(rid: str, max_tokens: int = 64) -> GenerationRequest:
    return GenerationRequest(rid, (104, 105), SamplingSpec(max_tokens=max_tokens))


async def test_the_gateways_remote_engine_works_through_the_gate_as_direct() -> None:
    fake_engine = FakeEngine("m", reply="a long answer " * 20, token_delay_s=0.01)
    fake = FakeVllm(fake_engine, api_key=KEY, other_load=2)
    async with fake_vllms(fake) as [running], gate(
            GatePolicy("generate", KEY), int(running.url.rsplit(":", 1)[1])) as url, \
            httpx.AsyncClient() as client:
        engine = RemoteEngine(url, "m", 2048, client, ReplicaAccess(api_key=KEY))
        direct = RemoteEngine(running.url, "m", 2048, client, ReplicaAccess(api_key=KEY))
        assert await engine.probe() and engine.stats().running == 2
        through = [out async for out in engine.generate(request("r1", 8))]
        straight = [out async for out in direct.generate(request("r2", 8))]
        assert [o.choices for o in through] == [o.choices for o in straight]
        stream = engine.generate(request("abort-me", 500))
        outputs = [await anext(stream)]
        await engine.abort("abort-me")  # through the gate's abort route
        outputs += [out async for out in stream]
        assert fake_engine.aborted == ["abort-me"]
        assert outputs[-1].finished and outputs[-1].choices[-1].finish_reason == "abort"


async def test_a_pooling_replicas_embeddings_work_through_its_gate() -> None:
    fake = FakeVllm(FakeEngine("e", embedding_size=6), api_key=KEY)
    async with fake_vllms(fake) as [running], gate(
            GatePolicy("embed", KEY), int(running.url.rsplit(":", 1)[1])) as url, \
            httpx.AsyncClient() as client:
        engine = RemoteEngine(url, "e", 2048, client, ReplicaAccess(api_key=KEY))
        out = await engine.embed(EmbeddingRequest("e1", (5, 6, 7)))
        assert out.prompt_tokens == 3 and len(out.embedding) == 6


def test_the_gate_and_its_command_import_neither_vllm_nor_torch() -> None:
    # The chart runs `llm-gateway engine gate` from the gateway's slim image (no vLLM, no torch).
    blocked = "import sys; sys.modules.update(vllm=None, torch=None); "
    result = subprocess.run([sys.executable, "-c", blocked + "import cli.engine"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
