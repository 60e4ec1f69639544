"""Server-sent events for a streamed completion (framed by sse-starlette).

Each event is one JSON chunk; JSON escaping keeps newlines and ``data:`` inside the
generated text from ever breaking SSE framing. The stream always ends with one usage
chunk (unless the client opted out) and ``data: [DONE]``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from gateway.errors import as_gateway_error
from gateway.serving.openai_format import ResponseFormat
from gateway.serving.run import RequestRun

log = logging.getLogger("llm_gateway.streaming")
DONE = "[DONE]"


def json_event(payload: dict[str, Any]) -> dict[str, str]:
    """One SSE event carrying ``payload`` as compact JSON."""
    return {"data": json.dumps(payload, ensure_ascii=False, separators=(",", ":"))}


async def completion_events(
    run: RequestRun, fmt: ResponseFormat, include_usage: bool
) -> AsyncIterator[dict[str, str]]:
    offsets = [0] * run.request.sampling.n
    try:
        if fmt.kind == "chat":
            for index in range(run.request.sampling.n):
                yield json_event(fmt.role_chunk(index))
        async for out in run.outputs():
            for delta in out.choices:
                chunk = fmt.delta_chunk(delta, offsets[delta.index])
                offsets[delta.index] += len(delta.text)
                if chunk is not None:
                    yield json_event(chunk)
                if delta.finish_reason is not None:
                    yield json_event(fmt.finish_chunk(delta.index, delta.finish_reason))
        extra = await run.settle()
        if include_usage:
            yield json_event(fmt.usage_chunk(run.tally.usage(), extra))
    except Exception as exc:  # a failure after the 200: report it in-band, then end
        error = as_gateway_error(exc)
        log.warning("stream %s failed: %s", run.request.request_id, error.message)
        yield json_event(error.envelope())
    finally:
        await run.close()
    yield {"data": DONE}
