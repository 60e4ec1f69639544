"""Forced tool calls: the named function's arguments, or a required list of calls."""

from __future__ import annotations

import json

import pytest

from gateway.serving.toolcalls.calls import Piece, assemble
from gateway.serving.toolcalls.forced import NamedStream, RequiredStream

CALLS = ('[{"name": "get_weather", "parameters": {"city": "Pa\\"ris", "days": [1, {"a": "}"}]}},'
         ' {"parameters": {"x": 1}, "name": "b\\u00e9"}]')


def streamed(stream: NamedStream | RequiredStream, text: str, size: int) -> list[Piece]:
    pieces = [stream.feed(text[i:i + size], ()) for i in range(0, len(text), size)]
    return [*pieces, stream.end()]


@pytest.mark.parametrize("size", [1, 2, 5, 13, len(CALLS)])
def test_required_when_streamed_in_any_pieces_then_calls_join_to_the_generated_json(
    size: int,
) -> None:
    calls = assemble(streamed(RequiredStream(), CALLS, size)).calls
    assert [c.name for c in calls] == ["get_weather", "bé"]
    assert [json.loads(c.arguments) for c in calls] == [
        {"city": 'Pa"ris', "days": [1, {"a": "}"}]}, {"x": 1}]
    assert calls[0].id != calls[1].id and all(c.id.startswith("call_") for c in calls)


def test_required_when_streamed_then_name_comes_once_before_any_arguments() -> None:
    pieces = streamed(RequiredStream(), CALLS, 1)
    first_call = [d for p in pieces for d in p.calls if d.index == 0]
    assert first_call[0].name == "get_weather" and first_call[0].id is not None
    assert all(d.name is None and d.id is None for d in first_call[1:])


def test_required_when_text_is_not_a_list_of_calls_then_no_call() -> None:
    stream = RequiredStream()
    assert assemble(streamed(stream, "I will not call anything.", 4)).calls == ()
    assert not stream.called


def test_named_when_streamed_then_the_whole_text_is_the_arguments_of_the_named_function(
) -> None:
    stream = NamedStream("get_weather")
    text = ' {"city": "Paris"}'
    extracted = assemble(streamed(stream, text, 3))
    assert stream.called
    assert [(c.name, c.arguments) for c in extracted.calls] == [
        ("get_weather", '{"city": "Paris"}')]
    assert extracted.content is None
