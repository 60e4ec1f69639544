"""``response_format`` and vLLM's ``structured_outputs`` to one engine constraint.

Schemas are checked here, cheapest first (``schemas.py``: nesting, size, ``$ref`` cycles,
then the meta-schema), and so are the rules vLLM applies before its grammar backend sees a
constraint (no empty grammar, no NUL in a regex, a structural tag that is a JSON object,
JSON inside a string parsed only once its nesting is known), so an invalid constraint is a
400 naming the field before any engine sees it. What the engine's grammar backend still
refuses comes back as a 400 naming the same field (``GenerationPlan.constraint_param``).
"""

from __future__ import annotations

import json
from typing import Any

from engine.protocol import StructuredOutput
from gateway.errors import InvalidRequestError
from gateway.openai.bodies import ChatCompletionRequest, SamplingBody
from gateway.openai.json_bounds import breach
from gateway.openai.tool_bodies import JsonObjectFormat, JsonSchemaFormat, StructuredOutputsBody
from gateway.serving.planning.schemas import VLLM_MAX_NESTING, checked_schema, utf8_size
from gateway.settings import LimitSettings

# vLLM lets a structural tag nest this much deeper than a schema (its wrapper objects).
STRUCTURAL_TAG_NESTING = VLLM_MAX_NESTING + 16


def _json_text(text: str, param: str, max_depth: int, limits: LimitSettings) -> Any:
    """JSON sent inside a string, parsed once its size and nesting are known to be bounded."""
    if utf8_size(text, param) > limits.max_schema_bytes:
        raise InvalidRequestError(f"{param} exceeds {limits.max_schema_bytes} bytes",
                                  param=param)
    if (found := breach(text, max_depth)) is not None:
        raise InvalidRequestError(f"{param}: {found.message}", param=param)
    try:
        return json.loads(text)
    except ValueError:
        raise InvalidRequestError(f"{param} is not valid JSON", param=param) from None


def _schema(body: StructuredOutputsBody, limits: LimitSettings) -> StructuredOutput:
    param = "structured_outputs.json"
    schema = body.json_
    if isinstance(schema, str):
        schema = _json_text(schema, param, min(limits.max_json_depth, VLLM_MAX_NESTING),
                            limits)
    if not isinstance(schema, dict):
        raise InvalidRequestError(f"{param} must be a JSON schema object", param=param)
    return StructuredOutput("json", checked_schema(schema, param, limits))


def _text_constraint(kind: str, spec: str, limits: LimitSettings) -> StructuredOutput:
    """A regex, grammar or structural tag: bounded, and as vLLM's own checks want it."""
    param = f"structured_outputs.{kind}"
    if utf8_size(spec, param) > limits.max_schema_bytes or "\x00" in spec:
        raise InvalidRequestError(
            f"{param} must be at most {limits.max_schema_bytes} bytes, without NUL "
            "characters", param=param)
    if not (spec if kind == "regex" else spec.strip()):  # vLLM: " " is a valid regex
        raise InvalidRequestError(f"{param} must not be empty", param=param)
    if kind == "structural_tag":
        tag = _json_text(spec, param, STRUCTURAL_TAG_NESTING, limits)
        if not isinstance(tag, dict):
            raise InvalidRequestError(f"{param} must be a JSON object", param=param)
    return StructuredOutput(kind, spec)  # type: ignore[arg-type]


def _from_extension(body: StructuredOutputsBody,
                    limits: LimitSettings) -> tuple[StructuredOutput, str]:
    """(the constraint, the field it came from)."""
    set_fields = [name for name in ("json_", "regex", "choice", "grammar", "json_object",
                                    "structural_tag") if getattr(body, name) is not None]
    if len(set_fields) != 1:
        raise InvalidRequestError("structured_outputs takes exactly one constraint",
                                  param="structured_outputs")
    kind = set_fields[0]
    param = f"structured_outputs.{kind.rstrip('_')}"
    if kind == "json_":
        return _schema(body, limits), param
    if kind == "json_object":
        if body.json_object is not True:
            raise InvalidRequestError("structured_outputs.json_object must be true",
                                      param=param)
        return StructuredOutput("json_object"), param
    if kind == "choice":
        if not body.choice:
            raise InvalidRequestError("structured_outputs.choice must not be empty",
                                      param=param)
        if sum(utf8_size(c, param) for c in body.choice) > limits.max_schema_bytes:
            raise InvalidRequestError(
                f"{param} exceeds {limits.max_schema_bytes} bytes", param=param)
        return StructuredOutput("choice", choices=tuple(body.choice)), param
    return _text_constraint(kind, str(getattr(body, kind)), limits), param


def _from_response_format(body: SamplingBody, limits: LimitSettings,
                          check: bool = True) -> StructuredOutput | None:
    """The constraint ``response_format`` asks for (``check``: its schema checked)."""
    fmt = body.response_format if isinstance(body, ChatCompletionRequest) else None
    if isinstance(fmt, JsonObjectFormat):
        return StructuredOutput("json_object")
    if isinstance(fmt, JsonSchemaFormat):
        schema = fmt.json_schema.schema_
        if schema is None:
            return StructuredOutput("json_object")
        if not check:
            return StructuredOutput("json", "{}")
        return StructuredOutput(
            "json", checked_schema(schema, "response_format.json_schema.schema", limits))
    return None  # text, or not set


def structured_output(body: SamplingBody,
                      limits: LimitSettings) -> tuple[StructuredOutput | None, str | None]:
    """(the constraint, the request field it came from)."""
    chat = isinstance(body, ChatCompletionRequest)
    if body.structured_outputs is not None:
        if chat and _from_response_format(body, limits, check=False) is not None:
            raise InvalidRequestError(
                "set response_format or structured_outputs, not both", param="structured_outputs")
        return _from_extension(body.structured_outputs, limits)
    from_format = _from_response_format(body, limits) if chat else None
    return from_format, ("response_format" if from_format is not None else None)
