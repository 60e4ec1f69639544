"""Schemas are checked cheapest first: nesting and finiteness, then size, then ``$ref``
pointers and cycles, and only then the meta-schema; each refusal names the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from gateway.errors import InvalidRequestError
from gateway.serving.planning.schemas import checked_schema
from gateway.settings import LimitSettings
from tests.gateway.serving.planning.clients import accepted, chat, refused

PARAM = "response_format.json_schema.schema"
LIMITS = LimitSettings()


def formatted(schema: dict[str, Any]) -> dict[str, Any]:
    return chat(response_format={"type": "json_schema",
                                 "json_schema": {"name": "x", "schema": schema}})


def nested(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def big(size: int) -> dict[str, Any]:
    return {"type": "object", "properties": {
        f"p{i}": {"type": "string", "description": "x" * 90} for i in range(size // 128)}}


async def test_schema_when_400_kb_then_refused_for_size_before_the_meta_schema_runs(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(schema: object) -> None:
        raise AssertionError("the meta-schema ran on an oversized schema")

    monkeypatch.setattr(Draft202012Validator, "check_schema", staticmethod(never))
    with pytest.raises(InvalidRequestError) as refusal:
        checked_schema(big(400_000), PARAM, LIMITS)
    assert refusal.value.param == PARAM and "65536 bytes" in refusal.value.message


async def test_schema_when_400_kb_then_400_naming_response_format() -> None:
    await refused(formatted(big(400_000)), PARAM)


async def test_schema_when_deeper_than_vllms_64_levels_then_400_even_if_the_body_allows_it(
) -> None:
    # 2 levels per nesting step: 40 steps are 81 levels, under a body bound of 128
    error = await refused(formatted(nested(40)), PARAM, max_json_depth=128)
    assert "64 levels" in error["message"]


def test_schema_when_deep_then_refused_before_anything_recurses() -> None:
    with pytest.raises(InvalidRequestError) as refusal:
        checked_schema(nested(400), "tools.0.function.parameters", LIMITS)
    assert refusal.value.param == "tools.0.function.parameters"


@pytest.mark.parametrize("schema", [
    {"$ref": "#"},
    {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    {"$defs": {"a": {"anyOf": [{"$ref": "#/$defs/a"}, {"type": "string"}]}},
     "$ref": "#/$defs/a"},
    {"allOf": [{"not": {"$ref": "#"}}]},
])
async def test_schema_when_a_ref_cycle_consumes_nothing_then_400(schema: dict[str, Any]) -> None:
    error = await refused(formatted(schema), PARAM)
    assert "cycle" in error["message"]


async def test_schema_when_a_ref_points_nowhere_then_400() -> None:
    error = await refused(formatted({"$ref": "#/$defs/nope"}), PARAM)
    assert "points nowhere" in error["message"]


async def test_schema_when_recursive_through_properties_then_accepted() -> None:
    tree = {"$defs": {"node": {"type": "object", "properties": {
        "name": {"type": "string"}, "children": {"type": "array", "items": {
            "$ref": "#/$defs/node"}}}}}, "$ref": "#/$defs/node"}
    await accepted(formatted(tree))
    escaped = {"$defs": {"a/b": {"type": "string"}}, "$ref": "#/$defs/a~1b"}
    await accepted(formatted(escaped))


async def test_schema_when_const_data_holds_a_ref_key_then_it_is_not_followed() -> None:
    await accepted(formatted({"const": {"$ref": "#/nowhere"}}))


async def test_schema_when_a_number_is_infinite_then_400() -> None:
    text = json.dumps(formatted({"type": "number", "maximum": 1}))
    await refused(text.replace('"maximum": 1', '"maximum": 1e999'), PARAM)


def test_schema_when_a_key_is_half_a_surrogate_pair_then_400_not_a_unicode_error() -> None:
    with pytest.raises(InvalidRequestError) as refusal:
        checked_schema({"type": "object", "properties": {"\ud800": {}}}, PARAM, LIMITS)
    assert refusal.value.param == PARAM


async def test_tool_parameters_when_cyclic_then_400_naming_the_tool() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"$ref": "#"}}}
    await refused(chat(tools=[tool], tool_choice="none"), "tools.0.function.parameters")
