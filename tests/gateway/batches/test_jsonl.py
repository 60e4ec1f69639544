"""The input parser: an over-long line is named by its number and never decoded, however
the file is cut into pieces; a line at the limit is a request like any other."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.batches import jsonl
from gateway.batches.jsonl import InputLine, InputParser

ENDPOINT = "/v1/completions"
LIMIT = 1024
DEPTH = 8


def _line(custom_id: str, prompt: str) -> bytes:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": ENDPOINT,
                       "body": {"model": "m", "prompt": prompt}}).encode()


def _at_length(custom_id: str, size: int) -> bytes:
    """A valid request line of exactly ``size`` bytes."""
    bare = len(_line(custom_id, ""))
    return _line(custom_id, "x" * (size - bare))


def _parse(data: bytes, piece: int) -> tuple[list[InputLine], InputParser]:
    parser = InputParser(ENDPOINT, 100, LIMIT, DEPTH)
    found = []
    for start in range(0, len(data), piece):
        found += parser.feed(data[start:start + piece])
    return found + parser.finish(), parser


@pytest.mark.parametrize("piece", [1, 7, 100, 4096, 1 << 20])
def test_parser_when_a_line_is_over_the_body_limit_then_named_and_never_decoded(
    piece: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: list[int] = []
    decode = jsonl._decode

    def spy(raw: bytes, max_depth: int) -> tuple[Any, str | None]:
        decoded.append(len(raw))
        return decode(raw, max_depth)

    monkeypatch.setattr(jsonl, "_decode", spy)
    data = b"\n".join([_line("a", "hi"), _at_length("huge", 50 * LIMIT), _line("b", "hi"),
                       b"{not json", _at_length("long", LIMIT + 1)]) + b"\n"
    _, parser = _parse(data, piece)  # lines before the first mistake may come out first
    assert parser.failed
    assert [(e["line"], e["code"]) for e in parser.errors] == [
        (2, "request_too_large"), (4, "invalid_json_line"), (5, "request_too_large")]
    assert str(LIMIT) in parser.errors[0]["message"]
    assert decoded and max(decoded) <= LIMIT  # the long lines were never decoded


@pytest.mark.parametrize("piece", [3, 1 << 20])
def test_parser_when_lines_are_at_the_body_limit_then_they_are_requests(piece: int) -> None:
    data = _at_length("a", LIMIT) + b"\n" + _at_length("b", LIMIT)  # no final newline
    found, parser = _parse(data, piece)
    assert not parser.failed
    assert [(line.custom_id, len(line.body["prompt"])) for line in found] == [
        ("a", LIMIT - len(_line("a", ""))), ("b", LIMIT - len(_line("b", "")))]


def test_parser_when_the_last_line_is_over_the_limit_without_a_newline_then_named() -> None:
    _, parser = _parse(_line("a", "hi") + b"\n" + _at_length("z", 3 * LIMIT), 256)
    assert parser.failed and [(e["line"], e["code"]) for e in parser.errors] == [
        (2, "request_too_large")]


def _raw_line(body: str) -> bytes:
    """A line around a body given as JSON text (which json.dumps could not write)."""
    return ('{"custom_id":"a","method":"POST","url":"' + ENDPOINT + '","body":' + body
            + "}").encode()


@pytest.mark.parametrize(("body", "why"), [
    ('{"model":"m","prompt":' + "[" * 9 + "]" * 9 + "}", "deeper than 9 levels"),
    ('{"model":"m","prompt":"x","temperature":NaN}', "NaN and Infinity"),
    ('{"model":"m","prompt":"\\ud800"}', "surrogate"),
])
def test_parser_when_a_lines_body_breaks_a_request_bodys_bounds_then_named_not_parsed(
    body: str, why: str,
) -> None:
    line = _raw_line(body)
    _, parser = _parse(_line("ok", "hi") + b"\n" + line + b"\n", 1 << 20)
    assert parser.failed
    [error] = parser.errors
    assert (error["line"], error["code"]) == (2, "invalid_json_line")
    assert why in error["message"] and error["message"].endswith("(in body)")


def test_parser_when_a_lines_body_nests_to_the_bound_then_it_is_a_request() -> None:
    nested = "[" * (DEPTH - 1) + "1" + "]" * (DEPTH - 1)
    line = _raw_line('{"model":"m","prompt":' + nested + "}")
    found, parser = _parse(line, 1 << 20)
    assert not parser.failed and [item.custom_id for item in found] == ["a"]
