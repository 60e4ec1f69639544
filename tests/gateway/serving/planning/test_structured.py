"""``structured_outputs`` as vLLM checks it before its grammar backend, and what the
backend still refuses: each a 400 naming the exact field."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.errors import EngineRequestError
from engine.fake import FakeEngine
from engine.protocol import EngineOutput, GenerationRequest
from tests.conftest import MODEL
from tests.gateway.http.test_openai_routes import assert_envelope
from tests.gateway.serving.planning.clients import accepted, chat, client_of, completion, refused


def deep_text(levels: int) -> str:
    return '{"type": "array", "items": ' * levels + '{"type": "string"}' + "}" * levels


@pytest.mark.parametrize(("constraint", "param"), [
    ({"json": deep_text(70)}, "structured_outputs.json"),  # deep inside a string
    ({"json": '{"type": "object", "minimum": NaN}'}, "structured_outputs.json"),
    ({"json": "{not json"}, "structured_outputs.json"),
    ({"json": "[1, 2]"}, "structured_outputs.json"),
    ({"json": {"type": "objekt"}}, "structured_outputs.json"),
    ({"regex": "a\x00b"}, "structured_outputs.regex"),
    ({"regex": "a" * 70_000}, "structured_outputs.regex"),
    ({"grammar": "   "}, "structured_outputs.grammar"),
    ({"structural_tag": "  "}, "structured_outputs.structural_tag"),
    ({"structural_tag": "[1]"}, "structured_outputs.structural_tag"),
    ({"structural_tag": "[" * 100 + "]" * 100}, "structured_outputs.structural_tag"),
    ({"choice": []}, "structured_outputs.choice"),
    ({"choice": ["x" * 40_000, "y" * 40_000]}, "structured_outputs.choice"),
    ({"json_object": False}, "structured_outputs.json_object"),
])
@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/completions"])
async def test_structured_outputs_when_vllm_would_refuse_then_400_naming_the_kind(
    route: str, constraint: dict[str, Any], param: str
) -> None:
    make = chat if route.endswith("chat/completions") else completion
    await refused(make(structured_outputs=constraint), param, route=route)


async def test_structured_outputs_when_a_whitespace_regex_then_accepted_as_vllm_does(
) -> None:
    await accepted(completion(structured_outputs={"regex": " "}), route="/v1/completions")
    await refused(completion(structured_outputs={"regex": ""}), "structured_outputs.regex",
                  route="/v1/completions")


async def test_structured_outputs_json_when_a_valid_string_schema_then_accepted() -> None:
    schema = json.dumps({"type": "object", "properties": {"a": {"type": "string"}}})
    await accepted(chat(structured_outputs={"json": schema}))


class RefusingEngine(FakeEngine):
    """Refuses every constrained request as vLLM's grammar backend does, naming nothing."""

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        if request.sampling.structured is not None:
            raise EngineRequestError("Failed to transform regex into a grammar: lookbehind")
        async for out in super().generate(request):
            yield out


@pytest.mark.parametrize(("fields", "param"), [
    ({"structured_outputs": {"regex": "(?<=a)b"}}, "structured_outputs.regex"),
    ({"structured_outputs": {"grammar": "root ::= x"}}, "structured_outputs.grammar"),
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "string"}}}}, "response_format"),
])
async def test_engine_refusal_when_the_backend_refuses_then_400_naming_the_exact_field(
    fields: dict[str, Any], param: str
) -> None:
    async with client_of(RefusingEngine(model_name=MODEL)) as client:
        response = await client.post("/v1/chat/completions", json=chat(**fields))
    error = assert_envelope(response, 400, param)
    assert "lookbehind" in error["message"]
