"""The tool-call reader a plan asks for, streamed or whole."""

from __future__ import annotations

from typing import Any

from gateway.serving.plan import ToolPlan
from gateway.serving.toolcalls.calls import CallStream, Extracted, assemble
from gateway.serving.toolcalls.forced import NamedStream, RequiredStream
from gateway.serving.toolcalls.parsed import ParsedCalls


def call_stream(plan: ToolPlan, tokenizer: Any) -> CallStream:
    """A reader for one streamed choice."""
    if plan.mode == "named":
        assert plan.named is not None
        return NamedStream(plan.named)
    if plan.mode == "required":
        return RequiredStream()
    return ParsedCalls(plan, tokenizer)


def extract(plan: ToolPlan, tokenizer: Any, text: str) -> Extracted:
    """A whole choice's text read at once (the non-streamed response)."""
    if plan.mode == "auto":
        return ParsedCalls(plan, tokenizer).extract(text)
    stream = call_stream(plan, tokenizer)
    return assemble([stream.feed(text, ()), stream.end()])
