"""A stand-in for a stock vLLM 0.32 server (``vllm serve --enable-scale-out --api-key K``).

For the fast remote-mode tests: the endpoints the gateway uses, in vLLM's shapes (checked
against vLLM's own pydantic models in test_remote.py; the real server is tests/e2e/
test_remote_replicas.py), around a ``FakeEngine``, on loopback with real uvicorn and HTTP
streaming, so aborts and broken connections behave as between a gateway and a replica:

- ``POST /inference/v1/generate``: one ``data:`` chunk per choice and step (``output_mode``
  text), a terminal ``abort`` chunk for a request aborted mid-way, the usage chunk, ``[DONE]``;
  a client that disconnects aborts the request (vLLM's ``with_cancellation``);
- ``POST /inference/v1/abort_requests`` (ids ``generate-tokens-<id>``), ``POST /v1/embeddings``;
- ``POST /v1/load_lora_adapter`` and ``/v1/unload_lora_adapter`` (a server with runtime LoRA
  updating): a generation naming an adapter it does not hold as ``model`` is a 404;
- ``GET /health``, ``GET /metrics`` (``vllm:*`` families); ``/v1`` and ``/inference`` need the key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from sse_starlette.sse import AppStatus
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from engine.errors import EngineRequestError, EngineUnavailableError
from engine.fake import FakeEngine
from engine.protocol import ChoiceDelta, EmbeddingRequest, GenerationRequest, SamplingSpec
from tests.conftest import free_port

PREFIX = "generate-tokens-"


@dataclass
class FakeVllm:
    """What a test sets on the replica and reads back from it."""

    engine: FakeEngine
    api_key: str | None = None
    healthy: bool = True
    cached_tokens: int = 0
    other_load: int = 0  # requests "another gateway" runs here (reported in /metrics)
    ignore_aborts: bool = False
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    peers: set[tuple[str, int]] = field(default_factory=set)  # the client ends of connections
    requests_total: int = 0
    lora_runtime: bool = True  # VLLM_ALLOW_RUNTIME_LORA_UPDATING: the load/unload routes exist
    loras: dict[str, str] = field(default_factory=dict)  # loaded adapters: name -> path
    lora_calls: list[tuple[str, str]] = field(default_factory=list)  # ("load"|"unload", name)

    def authorized(self, request: Request) -> bool:
        return self.api_key is None or (
            request.headers.get("authorization") == f"Bearer {self.api_key}")


def _error(message: str, code: int, param: str | None = None) -> dict[str, Any]:
    kind = "BadRequestError" if code == 400 else "InternalServerError"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _choice(delta: ChoiceDelta) -> dict[str, Any]:
    logprobs = None
    if delta.logprobs is not None:
        logprobs = {"content": [
            {"token": lp.token, "logprob": lp.logprob, "bytes": list(lp.token.encode()),
             "top_logprobs": [{"token": t.token, "logprob": t.logprob,
                               "bytes": list(t.token.encode())} for t in lp.top]}
            for lp in delta.logprobs]}
    return {"index": delta.index, "finish_reason": delta.finish_reason, "stop_reason": None,
            "token_ids": list(delta.token_ids), "routed_experts": None, "sampling_mask": None,
            "weight_versions": None, "text": delta.text, "logprobs": logprobs}


def _chunk(engine_id: str, choices: list[dict[str, Any]], usage: Any = None) -> str:
    body = {"request_id": engine_id, "usage": usage, "output_mode": "text", "choices": choices}
    return f"data: {json.dumps(body)}\n\n"


def _request(body: dict[str, Any]) -> GenerationRequest:
    params = body["sampling_params"]
    spec = SamplingSpec(max_tokens=params.get("max_tokens", 16), n=params.get("n", 1),
                        stop=tuple(params.get("stop") or ()), logprobs=params.get("logprobs"))
    return GenerationRequest(body["request_id"], tuple(body["token_ids"]), spec,
                             body.get("priority", 0), body.get("cache_salt"))


async def _stream(replica: FakeVllm, request: GenerationRequest) -> AsyncIterator[str]:
    engine_id, open_choices = PREFIX + request.request_id, set(range(request.sampling.n))
    completion, ended = 0, False
    try:
        try:
            async for out in replica.engine.generate(request):
                for delta in out.choices:
                    completion += len(delta.token_ids)
                    if delta.finish_reason is not None:
                        open_choices.discard(delta.index)
                    yield _chunk(engine_id, [_choice(delta)])
        except EngineUnavailableError as exc:
            ended = True
            yield f"data: {json.dumps(_error(str(exc), 500))}\n\n"
            yield "data: [DONE]\n\n"
            return
        for index in sorted(open_choices):  # aborted: vLLM's terminal output per choice
            yield _chunk(engine_id, [_choice(ChoiceDelta(index, (), "", None, "abort"))])
        prompt = len(request.prompt_token_ids)
        usage = {"prompt_tokens": prompt, "total_tokens": prompt + completion,
                 "completion_tokens": completion,
                 "prompt_tokens_details": {"cached_tokens": replica.cached_tokens}}
        ended = True
        yield f"data: {json.dumps({'request_id': engine_id, 'usage': usage, 'choices': []})}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        if not ended:  # the client went away: vLLM aborts the request
            await replica.engine.abort(request.request_id)


def _routes(replica: FakeVllm) -> list[Route]:
    async def generate(request: Request) -> Response:
        if not replica.authorized(request):
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        body = await request.json()
        replica.bodies.append(body)
        replica.headers.append(dict(request.headers))
        if request.client is not None:
            replica.peers.add((request.client.host, request.client.port))
        engine_request = _request(body)
        if (model := body.get("model")) is not None and model not in replica.loras:
            message = f"The model `{model}` does not exist."
            return JSONResponse({"error": {"message": message, "type": "NotFoundError",
                                           "param": "model", "code": 404}}, status_code=404)
        wanted = len(engine_request.prompt_token_ids) + engine_request.sampling.max_tokens
        if wanted > replica.engine.max_model_len:
            message = (f"This model's maximum context length is {replica.engine.max_model_len}"
                       f" tokens; this request asks for {wanted}")
            return JSONResponse(_error(message, 400, "max_tokens"), status_code=400)
        replica.requests_total += 1
        return StreamingResponse(_stream(replica, engine_request),
                                 media_type="text/event-stream")

    async def abort(request: Request) -> Response:
        if not replica.authorized(request):
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        if not replica.ignore_aborts:
            for engine_id in (await request.json())["request_ids"]:
                await replica.engine.abort(engine_id.removeprefix(PREFIX))
        return Response(status_code=200)

    async def embeddings(request: Request) -> Response:
        if not replica.authorized(request):
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        body = await request.json()
        replica.bodies.append(body)
        replica.requests_total += 1
        try:
            out = await replica.engine.embed(EmbeddingRequest(
                body["request_id"], tuple(body["input"]), body.get("dimensions")))
        except EngineRequestError as exc:
            return JSONResponse(_error(str(exc), 400), status_code=400)
        except EngineUnavailableError as exc:
            return JSONResponse(_error(str(exc), 500), status_code=500)
        return JSONResponse({"object": "list", "data": [
            {"index": 0, "object": "embedding", "embedding": list(out.embedding)}],
            "usage": {"prompt_tokens": out.prompt_tokens, "total_tokens": out.prompt_tokens}})

    async def health(_request: Request) -> Response:
        return Response(status_code=200 if replica.healthy else 503)

    async def load_lora(request: Request) -> Response:
        if not replica.authorized(request):
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        body = await request.json()
        name, path = body["lora_name"], body["lora_path"]
        replica.lora_calls.append(("load", name))
        if name in replica.loras:
            message = (f"The lora adapter '{name}' has already been loaded. If you want to "
                       "load the adapter in place, set 'load_inplace' to True.")
            return JSONResponse(_error(message, 400), status_code=400)
        if not await asyncio.to_thread(Path(path).is_dir):  # LoRAAdapterNotFoundError
            message = f"Loading lora {name} failed: No adapter found for {path}"
            return JSONResponse({"error": {"message": message, "type": "NotFoundError",
                                           "param": None, "code": 404}}, status_code=404)
        replica.loras[name] = path
        return Response(f"Success: LoRA adapter '{name}' added successfully.")

    async def unload_lora(request: Request) -> Response:
        if not replica.authorized(request):
            return JSONResponse({"error": "Unauthorized"}, status_code=401)
        name = (await request.json())["lora_name"]
        replica.lora_calls.append(("unload", name))
        if replica.loras.pop(name, None) is None:
            message = f"The lora adapter '{name}' cannot be found."
            return JSONResponse({"error": {"message": message, "type": "NotFoundError",
                                           "param": None, "code": 404}}, status_code=404)
        return Response(f"Success: LoRA adapter '{name}' removed successfully.")

    lora = [Route("/v1/load_lora_adapter", load_lora, methods=["POST"]),
            Route("/v1/unload_lora_adapter", unload_lora, methods=["POST"])]

    async def metrics(_request: Request) -> Response:
        return PlainTextResponse(_metrics_text(replica))

    return [Route("/inference/v1/generate", generate, methods=["POST"]),
            Route("/inference/v1/abort_requests", abort, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/health", health), Route("/metrics", metrics),
            *(lora if replica.lora_runtime else [])]


def _metrics_text(replica: FakeVllm) -> str:
    stats = replica.engine.stats()
    label = f'{{engine="0",model_name="{replica.engine.model_name}"}}'
    lines = []
    for name, kind, value in (
        ("vllm:num_requests_running", "gauge", stats.running + replica.other_load),
        ("vllm:num_requests_waiting", "gauge", stats.waiting),
        ("vllm:kv_cache_usage_perc", "gauge", stats.kv_cache_usage),
        ("vllm:prompt_tokens_total", "counter", stats.prompt_tokens_total),
        ("vllm:generation_tokens_total", "counter", stats.generation_tokens_total),
    ):
        lines += [f"# HELP {name} {name}", f"# TYPE {name} {kind}",  # as prometheus_client
                  f"{name}{label} {float(value)}"]
    return "\n".join(lines) + "\n"


@dataclass
class RunningReplica:
    url: str
    replica: FakeVllm
    server: uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.server.should_exit = True
        self.server.force_exit = True
        await self.task


async def start_fake_vllm(replica: FakeVllm, port: int | None = None) -> RunningReplica:
    port = port or free_port()
    config = uvicorn.Config(Starlette(routes=_routes(replica)), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="off")
    # As the gateway's own server does: otherwise sse-starlette ends every stream in this
    # process (the in-process gateway tests' too) once it sees a stopped replica's uvicorn exit.
    AppStatus.disable_automatic_graceful_drain()  # type: ignore[no-untyped-call]
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(1000):  # uvicorn offers a flag, not an event
        if server.started:
            break
        await asyncio.sleep(0.01)
    return RunningReplica(f"http://127.0.0.1:{port}", replica, server, task)


@asynccontextmanager
async def fake_vllms(*replicas: FakeVllm) -> AsyncIterator[list[RunningReplica]]:
    running = [await start_fake_vllm(replica) for replica in replicas]
    try:
        yield running
    finally:
        for one in running:
            if not one.task.done():
                await one.stop()
