"""Bodies that broke the gateway once (issue #30 and this fuzz's own findings), sent before
the generated ones on every run (Hypothesis's explicit examples): what the fuzz found stays
covered whatever the generator draws next. Each is a small valid request with one change.
"""

from __future__ import annotations

from tests.e2e.hostile.changes import EMBEDDER, Json
from tests.e2e.hostile.strategies import nested_schema

DEEP_SCHEMA = nested_schema(400, "object")  # a json_schema 400 objects deep: RecursionError once


def _schema(schema: Json) -> Json:
    return {"response_format": {"type": "json_schema",
                                "json_schema": {"name": "x", "schema": schema}}}


def chat_known(model: str) -> list[Json]:
    base: Json = {"model": model, "max_tokens": 1,
                  "messages": [{"role": "user", "content": "Say hi."}]}
    changes: list[Json] = [
        {"logit_bias": {"\u00b2": 5}}, {"logit_bias": {"\u0661": 5}},
        {"seed": 99999999999999999999999}, {"seed": -(2**63) - 1},
        {"n": 2, "temperature": 0, "seed": 2**64}, {"top_k": 99999999999999999999},
        _schema(DEEP_SCHEMA), _schema({"$ref": "#"}),
        _schema({"type": "object", "properties": {"\ud800": {"type": "string"}}}),
        _schema({"type": "object", "properties": {"\udfff": {"minimum": {}}}}),
        {"stop": "\ud800"}, {"bad_words": ["\ud800"]}, {"bad_words": [""]}, {"\udfff": 1},
        {"messages": [{"role": "user", "content": "\ud800"}]},
        {"structured_outputs": {"regex": "(a+)+$"}},
        {"structured_outputs": {"regex": "(?<=a)b"}},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"$ref": "#"}}}],
         "tool_choice": "required"},
        {"tool_choice": {"type": "function", "function": {"name": "f"}}},
        {"allowed_token_ids": [49152]}, {"stop_token_ids": [2**63]},
        {"logprobs": True, "top_logprobs": 21}, {"stop": [f"s{i}" for i in range(10_000)]},
    ]
    return [{**base, **change} for change in changes]


def completion_known(model: str) -> list[Json]:
    base: Json = {"model": model, "max_tokens": 1, "prompt": "Say hi."}
    changes: list[Json] = [
        {"prompt": "\ud800"}, {"prompt": ["a", "\udc00"]}, {"prompt": [[49152]]},
        {"prompt": []}, {"seed": 99999999999999999999999}, {"stop": "\udc00"},
        {"logprobs": 6}, {"logit_bias": {"\u00b2": 5}},
    ]
    return [{**base, **change} for change in changes]


def response_known(model: str) -> list[Json]:
    base: Json = {"model": model, "max_output_tokens": 1, "input": "Say hi."}
    changes: list[Json] = [
        {"text": {"format": {"type": "json_schema", "name": "x", "schema": DEEP_SCHEMA}}},
        {"instructions": "\ud800"}, {"metadata": {"\ud800": "x"}},
        {"seed": 99999999999999999999999}, {"previous_response_id": "\ud800"},
        {"input": [{"type": "function_call_output", "call_id": "x", "output": "y"}]},
    ]
    return [{**base, **change} for change in changes]


def embedding_known() -> list[Json]:
    base: Json = {"model": EMBEDDER, "input": "Say hi."}
    changes: list[Json] = [
        {"input": "\ud800"}, {"input": [[30522]]}, {"input": ["a"] * 2049},
        {"dimensions": 10**20}, {"\udfff": 1},
    ]
    return [{**base, **change} for change in changes]
