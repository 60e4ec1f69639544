"""``breach``: a JSON text's nesting, non-finite literals and lone surrogates, found on its
bytes without parsing it, and the top-level field named."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from gateway.openai.json_bounds import breach


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def hostile_strings(rng: random.Random, levels: int) -> Any:
    """Random JSON whose strings hold brackets, quotes, backslashes and NaN."""
    if levels == 0 or rng.random() < 0.3:
        return rng.choice([1, None, 'x[{"\\', "NaN", "\\", "]}"])
    if rng.random() < 0.5:
        return [hostile_strings(rng, levels - 1) for _ in range(rng.randint(0, 3))]
    return {f'{i}]"\\': hostile_strings(rng, levels - 1) for i in range(rng.randint(0, 3))}


@pytest.mark.parametrize("bound", [1, 3, 5])
def test_breach_when_random_json_then_refused_exactly_when_deeper_than_the_bound(
    bound: int
) -> None:
    rng = random.Random(bound)
    for _ in range(500):
        value = hostile_strings(rng, 7)
        found = breach(json.dumps(value), bound)
        assert (found is not None) == (depth(value) > bound), json.dumps(value)


def test_breach_when_too_deep_then_names_the_top_level_key_it_happened_in() -> None:
    found = breach('{"a": [[1]], "b": {"c": [[[[2]]]]}}', 3)
    assert found is not None and found.param == "b"
    assert breach('{"a": [[1]], "b": {"c": [[[[2]]]]}}', 6) is None


def test_breach_when_unbalanced_brackets_then_they_count_as_levels() -> None:
    found = breach(b'{"a": ' + b"[" * 70, 64)
    assert found is not None and found.param == "a"
    assert breach(b"]" * 100, 64) is None  # invalid JSON, but nothing to recurse through


@pytest.mark.parametrize(("text", "param"), [
    ('{"temperature": NaN}', "temperature"),
    ('{"a": 1, "b": {"c": [-Infinity]}}', "b"),
    ("[Infinity]", None),
])
def test_breach_when_a_non_finite_literal_then_refused_naming_its_field(
    text: str, param: str | None
) -> None:
    found = breach(text, 64)
    assert found is not None and found.param == param and "NaN" in found.message


@pytest.mark.parametrize(("text", "param"), [
    ('{"stop": "\\ud800"}', "stop"),
    ('{"a": "x", "b": ["\\udc00y"]}', "b"),
    ('{"s": "\\ude00\\ud83d"}', "s"),  # the halves in the wrong order
    ('{"\\udfff": 1}', "\\udfff"),  # a key that is half a pair names itself
    ('["\\ud800"]', None),
])
def test_breach_when_a_lone_surrogate_escape_then_refused_naming_its_field(
    text: str, param: str | None
) -> None:
    found = breach(text, 64)
    assert found is not None and found.param == param and "surrogate" in found.message


@pytest.mark.parametrize("text", [
    '{"s": "\\ud83d\\ude00"}',  # a whole pair: one emoji
    '{"s": "\\\\ud800"}',  # an escaped backslash, then plain text
    '{"s": "NaN Infinity [[[[[[[[ \\" {{{{"}',
])
def test_breach_when_hostile_looking_text_is_inside_strings_then_none(text: str) -> None:
    assert breach(text, 2) is None
