"""``response_format`` and vLLM's ``structured_outputs`` to one engine constraint.

Schemas are checked against the JSON Schema meta-schema here, so an invalid one is a 400
naming the field before any engine sees it; what the engine's grammar backend still
refuses comes back as a 400 naming the same field (``GenerationPlan.constraint_param``).
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from engine.protocol import StructuredOutput
from gateway.errors import InvalidRequestError
from gateway.openai.bodies import ChatCompletionRequest, SamplingBody
from gateway.openai.tool_bodies import JsonObjectFormat, JsonSchemaFormat, StructuredOutputsBody
from gateway.settings import LimitSettings


def compact(value: Any) -> str:
    """Compact JSON keeping the client's key order (the order arguments are generated in)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def checked_schema(schema: dict[str, Any], param: str, limits: LimitSettings) -> str:
    """The schema as compact JSON, once it is a valid JSON Schema of a bounded size."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise InvalidRequestError(
            f"{param} is not a valid JSON schema: {exc.message}"
            + (f" (at {where})" if where else ""), param=param) from exc
    text = compact(schema)
    if len(text.encode()) > limits.max_schema_bytes:
        raise InvalidRequestError(f"{param} exceeds {limits.max_schema_bytes} bytes",
                                  param=param)
    return text


def _from_extension(body: StructuredOutputsBody, limits: LimitSettings) -> StructuredOutput:
    param = "structured_outputs"
    set_fields = [name for name in ("json_", "regex", "choice", "grammar", "json_object",
                                    "structural_tag") if getattr(body, name) is not None]
    if len(set_fields) != 1:
        raise InvalidRequestError("structured_outputs takes exactly one constraint",
                                  param=param)
    kind = set_fields[0]
    if kind == "json_":
        schema = body.json_
        try:
            parsed = json.loads(schema) if isinstance(schema, str) else schema
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise InvalidRequestError("structured_outputs.json must be a JSON schema object",
                                      param="structured_outputs.json")
        return StructuredOutput("json", checked_schema(parsed, "structured_outputs.json", limits))
    if kind == "json_object":
        if body.json_object is not True:
            raise InvalidRequestError("structured_outputs.json_object must be true", param=param)
        return StructuredOutput("json_object")
    if kind == "choice":
        if not body.choice:
            raise InvalidRequestError("structured_outputs.choice must not be empty", param=param)
        return StructuredOutput("choice", choices=tuple(body.choice))
    spec = str(getattr(body, kind))
    if not spec.strip() or len(spec.encode()) > limits.max_schema_bytes or "\x00" in spec:
        raise InvalidRequestError(
            f"structured_outputs.{kind} must be non-empty, at most {limits.max_schema_bytes} "
            "bytes, without NUL characters", param=f"structured_outputs.{kind}")
    return StructuredOutput(kind, spec)  # type: ignore[arg-type]


def _from_response_format(body: ChatCompletionRequest,
                          limits: LimitSettings) -> StructuredOutput | None:
    fmt = body.response_format
    if isinstance(fmt, JsonObjectFormat):
        return StructuredOutput("json_object")
    if isinstance(fmt, JsonSchemaFormat):
        schema = fmt.json_schema.schema_
        if schema is None:
            return StructuredOutput("json_object")
        return StructuredOutput(
            "json", checked_schema(schema, "response_format.json_schema.schema", limits))
    return None  # text, or not set


def structured_output(body: SamplingBody,
                      limits: LimitSettings) -> tuple[StructuredOutput | None, str | None]:
    """(the constraint, the request field it came from)."""
    from_format = (_from_response_format(body, limits)
                   if isinstance(body, ChatCompletionRequest) else None)
    if body.structured_outputs is not None:
        if from_format is not None:
            raise InvalidRequestError(
                "set response_format or structured_outputs, not both", param="structured_outputs")
        return _from_extension(body.structured_outputs, limits), "structured_outputs"
    return from_format, ("response_format" if from_format is not None else None)
