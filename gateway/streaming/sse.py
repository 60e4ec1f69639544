"""Server-sent events for a streamed answer (framed by sse-starlette).

Each event is one JSON chunk; JSON escaping keeps newlines and ``data:`` inside the
generated text from ever breaking SSE framing. A stream ends with a usage chunk only when
the client asked for one (``stream_options.include_usage``), then ``data: [DONE]``; a
failure after the 200 is reported in-band as an error envelope before ``[DONE]``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from gateway.errors import as_gateway_error
from gateway.serving.formatting.responder import Responder
from gateway.serving.plan import StreamUsage
from gateway.serving.run import RequestRun

log = logging.getLogger("llm_gateway.streaming")
DONE = "[DONE]"


def json_event(payload: dict[str, Any]) -> dict[str, str]:
    """One SSE event carrying ``payload`` as compact JSON."""
    return {"data": json.dumps(payload, ensure_ascii=False, separators=(",", ":"))}


async def run_events(run: RequestRun, responder: Responder,
                     stream_usage: StreamUsage) -> AsyncIterator[dict[str, str]]:
    """A run's chunks, its usage chunk if asked, ``[DONE]``; the run is closed (aborted if
    unfinished, settled) however the stream ends, the client hanging up included."""
    try:
        async for chunk in responder.chunks(run):
            yield json_event(chunk)
        settled = await run.settle()
        if stream_usage != "none":
            yield json_event(responder.usage_chunk(run.tally, settled))
    except Exception as exc:  # a failure after the 200: report it in-band, then end
        error = as_gateway_error(exc)
        log.warning("stream %s failed: %s", run.requests[0].request_id, error.message)
        yield json_event(error.envelope())
    finally:
        await run.close()
    yield {"data": DONE}
