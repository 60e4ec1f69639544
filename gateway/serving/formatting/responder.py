"""What every endpoint's formatter offers the pipeline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from gateway.serving.accounting import Settled
from gateway.serving.plan import StreamUsage
from gateway.serving.run import RequestRun
from gateway.serving.tally import Tally

Json = dict[str, Any]


class Responder(Protocol):
    def full(self, tally: Tally, settled: Settled) -> Json:
        """The whole response body of a finished (non-streamed) request."""
        ...

    def chunks(self, run: RequestRun) -> AsyncIterator[Json]:
        """The stream's chunks while the run produces outputs (usage chunk excluded)."""
        ...

    def usage_chunk(self, tally: Tally, settled: Settled) -> Json: ...


def public_finish(reason: str | None) -> str | None:
    """An aborted or failed choice is reported as stopped (OpenAI knows no other reason)."""
    return "stop" if reason in ("abort", "error") else reason


def running_usage(mode: StreamUsage, tally: Tally) -> Json | None:
    """vLLM's ``continuous_usage_stats``: the counts so far on every chunk."""
    if mode != "continuous":
        return None
    usage = tally.usage()
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}
