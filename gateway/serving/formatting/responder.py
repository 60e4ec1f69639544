"""What every endpoint's formatter offers the pipeline: whole bodies, stream chunks and how
they are framed as server-sent events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson

from gateway.errors import GatewayError
from gateway.serving.accounting import Settled
from gateway.serving.plan import StreamUsage
from gateway.serving.run import RequestRun
from gateway.serving.tally import Tally

Json = dict[str, Any]
DONE = "[DONE]"


class Responder(Protocol):
    async def full(self, tally: Tally, settled: Settled) -> Json:
        """The whole response body of a finished (non-streamed) request."""
        ...

    def chunks(self, run: RequestRun) -> AsyncIterator[Json]:
        """The stream's chunks while the run produces outputs."""
        ...

    async def final(self, tally: Tally, settled: Settled) -> Json | None:
        """The chunk after settlement (the usage chunk, if asked), or None."""
        ...

    def frame(self, chunk: Json) -> dict[str, str]:
        """One chunk as an SSE event."""
        ...

    def failure(self, error: GatewayError) -> Json:
        """The chunk reporting a failure after the 200."""
        ...

    def done(self) -> dict[str, str] | None:
        """The stream's last event, if the API has one (``[DONE]``)."""
        ...


def json_data(payload: Json) -> str:
    """Compact JSON: escaping keeps newlines and ``data:`` inside generated text from ever
    breaking the SSE framing. orjson: 2.86 -> 0.28 us for a token's chunk (bench/results/
    2026-12-07-2cpu-epyc-gateway-overhead-micro-json.md); what it refuses (an integer past
    64 bits or nesting past 254 levels, as a relayed upstream may send) goes through ``json``."""
    try:
        return orjson.dumps(payload).decode()
    except TypeError:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


class CompletionsFraming:
    """Chat and text completions: data-only events, errors as the envelope, ``[DONE]``."""

    def frame(self, chunk: Json) -> dict[str, str]:
        return {"data": json_data(chunk)}

    def failure(self, error: GatewayError) -> Json:
        return error.envelope()

    def done(self) -> dict[str, str] | None:
        return {"data": DONE}


def public_finish(reason: str | None) -> str | None:
    """An aborted or failed choice is reported as stopped (OpenAI knows no other reason)."""
    return "stop" if reason in ("abort", "error") else reason


def running_usage(mode: StreamUsage, tally: Tally) -> Json | None:
    """vLLM's ``continuous_usage_stats``: the counts so far on every chunk."""
    if mode != "continuous":
        return None
    prompt, completion = tally.prompt_tokens, tally.completion_tokens  # no reasoning count:
    return {"prompt_tokens": prompt, "completion_tokens": completion,  # it decodes, per chunk
            "total_tokens": prompt + completion}
