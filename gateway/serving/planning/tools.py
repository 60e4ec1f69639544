"""``tools`` / ``tool_choice`` (and the legacy ``functions`` / ``function_call``) to a plan.

``required`` and a named choice are forced with structured outputs, so they work on any
model: a named choice constrains the text to the function's parameters schema (the text
*is* the arguments); ``required`` constrains it to a JSON list of ``{"name", "parameters"}``
objects. ``auto`` needs the model's tool parser (``tool_parser`` in the model settings),
which reads the model's own tool-call format; without one it is a 400, never silence.
"""

from __future__ import annotations

import json
from typing import Any

from engine.protocol import StructuredOutput
from gateway.errors import InvalidRequestError
from gateway.openai.bodies import ChatCompletionRequest
from gateway.openai.tool_bodies import FunctionDefinition, NamedFunction, NamedToolChoice
from gateway.serving.plan import ToolPlan, ToolSpec
from gateway.serving.planning.schemas import checked_schema, compact
from gateway.settings import LimitSettings

EMPTY_OBJECT: dict[str, Any] = {"type": "object", "properties": {}}


def _functions(body: ChatCompletionRequest) -> tuple[list[FunctionDefinition], bool]:
    """The function definitions and whether they came through the legacy API."""
    if body.tools is not None and body.functions is not None:
        raise InvalidRequestError("set tools or functions, not both", param="functions")
    if body.functions is not None:
        return list(body.functions), True
    return [tool.function for tool in body.tools or []], False


def _choice(body: ChatCompletionRequest, legacy: bool) -> str | NamedFunction | None:
    if body.tool_choice is not None and body.function_call is not None:
        raise InvalidRequestError("set tool_choice or function_call, not both",
                                  param="function_call")
    if legacy or body.function_call is not None:
        return body.function_call
    choice = body.tool_choice
    return choice.function if isinstance(choice, NamedToolChoice) else choice


def _specs(functions: list[FunctionDefinition], limits: LimitSettings) -> tuple[ToolSpec, ...]:
    if len(functions) > limits.max_tools:
        raise InvalidRequestError(f"at most {limits.max_tools} tools are allowed", param="tools")
    names = [f.name for f in functions]
    if len(set(names)) != len(names):
        raise InvalidRequestError("tool names must be unique", param="tools")
    return tuple(
        ToolSpec(f.name, f.description, None if f.parameters is None else checked_schema(
            f.parameters, f"tools.{i}.function.parameters", limits))
        for i, f in enumerate(functions))


def tool_plan(body: ChatCompletionRequest, parser: str | None,
              limits: LimitSettings) -> tuple[ToolPlan | None, tuple[ToolSpec, ...]]:
    """(how to read tool calls, or None; the tools the template shows the model)."""
    functions, legacy = _functions(body)
    choice = _choice(body, legacy)
    param = "function_call" if legacy else "tool_choice"
    if not functions:
        if choice not in (None, "none"):
            raise InvalidRequestError(f"{param} is only allowed when tools are specified",
                                      param=param)
        if body.parallel_tool_calls is not None:
            raise InvalidRequestError("parallel_tool_calls is only allowed with tools",
                                      param="parallel_tool_calls")
        return None, ()
    specs = _specs(functions, limits)
    choice = "auto" if choice is None else choice
    if choice == "none":
        return None, specs
    if choice == "auto" and parser is None:
        raise InvalidRequestError(
            f"{param} 'auto' needs a tool parser for model '{body.model}', and it has none "
            f"configured; send {param} 'required' or name a function", param=param)
    named = choice.name if isinstance(choice, NamedFunction) else None
    if named is not None and named not in {s.name for s in specs}:
        raise InvalidRequestError(f"function '{named}' is not among the tools", param=param)
    mode = "named" if named is not None else str(choice)
    plan = ToolPlan(mode=mode, tools=specs, named=named,  # type: ignore[arg-type]
                    parallel=body.parallel_tool_calls is not False and not legacy,
                    parser=parser if mode == "auto" else None, legacy=legacy)
    return plan, specs


def forced_output(plan: ToolPlan) -> StructuredOutput | None:
    """The structured-output constraint that forces a named or required tool call."""
    if plan.mode == "named":
        spec = next(t for t in plan.tools if t.name == plan.named)
        return StructuredOutput("json", spec.parameters or compact(EMPTY_OBJECT))
    if plan.mode != "required":
        return None
    parameters = [json.loads(t.parameters or compact(EMPTY_OBJECT)) for t in plan.tools]
    defs = _hoisted_defs(parameters)
    calls = [{"type": "object",
              "properties": {"name": {"type": "string", "enum": [t.name]},
                             "parameters": p},
              "required": ["name", "parameters"]} for t, p in zip(plan.tools, parameters,
                                                                  strict=True)]
    schema: dict[str, Any] = {"type": "array", "minItems": 1, "items": {"anyOf": calls}}
    if not plan.parallel:
        schema["maxItems"] = 1
    if defs:
        schema["$defs"] = defs
    return StructuredOutput("json", compact(schema))


def _hoisted_defs(parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """Each tool's ``$defs``, moved to the root of the ``required`` schema: a tool's
    ``#/$defs/X`` reference means its own root, which is the combined schema's root once
    the tools are nested in it. Two tools defining one name differently are a 400."""
    defs: dict[str, Any] = {}
    for i, schema in enumerate(parameters):
        for name, definition in (schema.pop("$defs", None) or {}).items():
            if name in defs and defs[name] != definition:
                raise InvalidRequestError(
                    f"tools define '$defs/{name}' differently; with tool_choice 'required' "
                    "their definitions share one namespace",
                    param=f"tools.{i}.function.parameters")
            defs[name] = definition
    return defs


def template_tools(specs: tuple[ToolSpec, ...]) -> tuple[dict[str, Any], ...]:
    """The tools as the chat template expects them (OpenAI's shape)."""
    return tuple({"type": "function", "function": {
        "name": s.name, **({"description": s.description} if s.description else {}),
        "parameters": json.loads(s.parameters) if s.parameters else EMPTY_OBJECT}}
        for s in specs)
