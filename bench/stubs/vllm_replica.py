"""A stand-in vLLM replica at a configured token rate: the gateway's remote path, no model.

It speaks what the gateway speaks to a stock ``vllm serve --enable-scale-out`` replica
(engine/vllm_http.py), in vLLM 0.32's own bytes (the chunks pydantic's ``model_dump_json``
writes in ``vllm/entrypoints/scale_out/token_in_token_out/serving.py``; checked in
tests/bench/test_stubs.py against vLLM's classes):

- ``POST /inference/v1/generate`` (``stream: true``, ``output_mode: text``): per step, one
  chunk per choice with one token id and its text; the last step's chunks finish ``length``
  (``max_tokens`` tokens; stop strings and EOS never end a stub's answer); a request
  aborted mid-way gets vLLM's terminal ``abort`` chunk per open choice; with
  ``include_usage`` the usage chunk (prompt tokens = the ids sent, cached tokens 0); ``[DONE]``;
- ``POST /inference/v1/abort_requests`` (ids ``generate-tokens-<id>``);
- ``GET /health`` and ``GET /metrics`` (the ``vllm:*`` families the router reads).

With ``--api-key`` the ``/inference`` and ``/v1`` paths need it, as vLLM's ``--api-key``.
``python -m bench.stubs.vllm_replica --port P --rate 50`` serves until a signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from bench.stubs.pacing import (
    RATE_PATH,
    Rate,
    Receive,
    Scope,
    Send,
    answer,
    arguments,
    bearer,
    end_stream,
    event,
    rate_of,
    read_json,
    serve,
    start_stream,
    token,
)

GENERATE = "/inference/v1/generate"
ABORT = "/inference/v1/abort_requests"
PREFIX = "generate-tokens-"  # vLLM 0.32's name for a /inference/v1/generate request


def text_chunk(engine_id: str, index: int, token_id: int | None, text: str,
               finish: str | None) -> str:
    """One ``GenerateTextStreamResponse`` with one choice, as vLLM serialises it."""
    ids = "null" if token_id is None else f"[{token_id}]"
    reason = "null" if finish is None else f'"{finish}"'
    return (f'{{"request_id":"{engine_id}","usage":null,"output_mode":"text","choices":'
            f'[{{"index":{index},"finish_reason":{reason},"stop_reason":null,'
            f'"token_ids":{ids},"routed_experts":null,"sampling_mask":null,'
            f'"weight_versions":null,"text":{json.dumps(text, ensure_ascii=False)},'
            f'"logprobs":null}}]}}')


def usage_chunk(engine_id: str, prompt: int, completion: int) -> str:
    """The final chunk (``exclude_none``), with ``--enable-prompt-tokens-details``."""
    return (f'{{"request_id":"{engine_id}","usage":{{"prompt_tokens":{prompt},'
            f'"total_tokens":{prompt + completion},"completion_tokens":{completion},'
            f'"prompt_tokens_details":{{"cached_tokens":0}}}},"output_mode":"text",'
            f'"choices":[]}}')


@dataclass
class Replica:
    """The stub's state: its rate, key, open requests (aborted ones flagged) and counters."""

    rate: Rate
    api_key: str | None = None
    open: set[str] = field(default_factory=set)
    aborted: set[str] = field(default_factory=set)
    running: int = 0
    prompt_tokens_total: int = 0
    generation_tokens_total: int = 0

    def metrics(self) -> str:
        lines = []
        for name, kind, value in (
            ("vllm:num_requests_running", "gauge", self.running),
            ("vllm:num_requests_waiting", "gauge", 0),
            ("vllm:kv_cache_usage_perc", "gauge", 0),
            ("vllm:prompt_tokens_total", "counter", self.prompt_tokens_total),
            ("vllm:generation_tokens_total", "counter", self.generation_tokens_total),
        ):
            lines += [f"# HELP {name} {name}", f"# TYPE {name} {kind}",
                      f'{name}{{engine="0",model_name="stub"}} {float(value)}']
        return "\n".join(lines) + "\n"


async def _watch(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


async def _generate(replica: Replica, body: dict[str, Any], receive: Receive,
                    send: Send) -> None:
    request_id, params = str(body["request_id"]), body.get("sampling_params") or {}
    engine_id, n = PREFIX + request_id, int(params.get("n") or 1)
    max_tokens, prompt = int(params.get("max_tokens") or 16), len(body.get("token_ids") or ())
    usage = bool((body.get("stream_options") or {}).get("include_usage"))
    gone = asyncio.Event()
    watcher = asyncio.create_task(_watch(receive, gone))
    replica.running += 1
    replica.open.add(engine_id)
    replica.prompt_tokens_total += prompt
    start, made = asyncio.get_running_loop().time(), 0
    try:
        await start_stream(send)
        for k in range(max_tokens):
            await replica.rate.wait(start, k)
            if gone.is_set() or engine_id in replica.aborted:
                break
            token_id, text = token(k)
            finish = "length" if k == max_tokens - 1 else None
            for index in range(n):
                await event(send, text_chunk(engine_id, index, token_id, text, finish))
            made += n
        replica.generation_tokens_total += made
        if gone.is_set():
            return
        if made < max_tokens * n:  # aborted: vLLM's terminal output per open choice
            for index in range(n):
                await event(send, text_chunk(engine_id, index, None, "", "abort"))
        if usage:
            await event(send, usage_chunk(engine_id, prompt, made))
        await end_stream(send)
    finally:
        replica.running -= 1
        replica.open.discard(engine_id)
        replica.aborted.discard(engine_id)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def _refusal(message: str, status: int) -> bytes:
    kind = "BadRequestError" if status == 400 else "Unauthorized"
    return json.dumps({"error": {"message": message, "type": kind, "param": None,
                                 "code": status}}).encode()


def app_for(replica: Replica) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        guarded = path.startswith(("/inference", "/v1"))
        if guarded and replica.api_key and bearer(scope) != replica.api_key:
            await answer(send, 401, b'{"error":"Unauthorized"}')
        elif path == GENERATE:
            body = await read_json(receive)
            if not body.get("stream") or body.get("output_mode") != "text":
                await answer(send, 400, _refusal("the stub streams output_mode text only", 400))
            else:
                await _generate(replica, body, receive, send)
        elif path == ABORT:
            ids = set((await read_json(receive)).get("request_ids") or ())
            replica.aborted.update(ids & replica.open)
            await answer(send, 200, b"")
        elif path == RATE_PATH and scope["method"] == "POST":
            replica.rate = rate_of(await read_json(receive))
            await answer(send, 200, b"{}")
        elif path == "/health":
            await answer(send, 200, b"")
        elif path == "/metrics":
            await answer(send, 200, replica.metrics().encode(), b"text/plain; version=0.0.4")
        else:
            await answer(send, 404, b'{"detail":"Not Found"}')

    return app


def main() -> None:
    args = arguments("A vLLM replica stand-in at a token rate.").parse_args()
    replica = Replica(Rate(args.rate, args.ttft_ms / 1000), args.api_key)
    serve(app_for(replica), args.host, args.port)


if __name__ == "__main__":
    main()
