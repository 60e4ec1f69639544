"""``tool_choice: auto`` through vLLM's own hermes parser, fed the format it parses."""

from __future__ import annotations

import json

import pytest

from engine.fake import CharRenderer
from gateway.serving.plan import ToolPlan, ToolSpec
from gateway.serving.toolcalls.calls import assemble
from gateway.serving.toolcalls.parsed import ParsedCalls, known_parsers

PLAN = ToolPlan("auto", (ToolSpec("get_weather", "Weather", '{"type":"object"}'),
                         ToolSpec("get_time")), parser="hermes")
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def test_known_parsers_when_listed_then_vllms_common_parsers_are_there() -> None:
    assert {"hermes", "llama3_json", "mistral", "pythonic"} <= set(known_parsers())


def test_extract_when_text_has_a_hermes_call_then_call_and_leading_content() -> None:
    extracted = ParsedCalls(PLAN, CharRenderer()).extract("Let me check. " + CALL)
    assert [(c.name, json.loads(c.arguments)) for c in extracted.calls] == [
        ("get_weather", {"city": "Paris"})]
    assert extracted.content == "Let me check. "


def test_extract_when_plain_text_then_content_only() -> None:
    extracted = ParsedCalls(PLAN, CharRenderer()).extract("Paris is sunny.")
    assert extracted == type(extracted)("Paris is sunny.", ())


@pytest.mark.parametrize("size", [1, 3, 7])
def test_stream_when_fed_in_pieces_then_same_call_as_whole_text(size: int) -> None:
    reader = ParsedCalls(PLAN, CharRenderer())
    text = "Sure. " + CALL
    pieces = [reader.feed(text[i:i + size], [ord(c) for c in text[i:i + size]])
              for i in range(0, len(text), size)]
    pieces.append(reader.end())
    extracted = assemble(pieces)
    assert reader.called
    assert [(c.name, json.loads(c.arguments)) for c in extracted.calls] == [
        ("get_weather", {"city": "Paris"})]
    assert (extracted.content or "").strip() == "Sure."


def test_when_model_calls_a_function_not_offered_then_no_call_reaches_the_client() -> None:
    unknown = CALL.replace("get_weather", "rm_rf")
    assert ParsedCalls(PLAN, CharRenderer()).extract(unknown).calls == ()
    reader = ParsedCalls(PLAN, CharRenderer())
    pieces = [reader.feed(ch, [ord(ch)]) for ch in unknown] + [reader.end()]
    assert assemble(pieces).calls == () and not reader.called
