"""Server-sent events for a streamed answer (framed by sse-starlette).

The responder frames each chunk (JSON-escaped, so generated text can never break the SSE
framing); after the run settles it may add a final chunk (the usage chunk, only when the
client asked, or the Responses API's ``response.completed``). A failure after the 200 is
reported in-band, then the stream ends (with ``[DONE]`` where the API has it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from gateway.errors import ServiceUnavailableError, as_gateway_error
from gateway.serving.formatting.responder import Responder
from gateway.serving.run import RequestRun

log = logging.getLogger("llm_gateway.streaming")


async def run_events(run: RequestRun, responder: Responder,
                     deadline_s: float) -> AsyncIterator[dict[str, str]]:
    """A run's events; the run is closed (aborted if unfinished, settled) however the stream
    ends: finished, the client hanging up or not reading, or past ``deadline_s``."""
    deadline = time.monotonic() + deadline_s
    try:
        async for chunk in responder.chunks(run):
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(f"the stream ran longer than {deadline_s:.0f} s")
            yield responder.frame(chunk)
        settled = await run.settle()
        if (final := await responder.final(run.tally, settled)) is not None:
            yield responder.frame(final)
    except Exception as exc:  # a failure after the 200: report it in-band, then end
        error = as_gateway_error(exc)
        log.warning("stream %s failed: %s", run.requests[0].request_id, error.message)
        yield responder.frame(responder.failure(error))
    finally:
        await run.close()
    if (done := responder.done()) is not None:
        yield done
