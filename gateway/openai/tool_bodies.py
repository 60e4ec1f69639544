"""Request parts for tools and structured outputs, as OpenAI (and vLLM) define them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

FunctionName = Annotated[StrictStr, Field(pattern=r"^[a-zA-Z0-9_.-]{1,64}$")]


class Body(BaseModel):
    """Every request part: unknown fields are 400s, never silently dropped; a float field
    refuses NaN and infinities (``1e999`` parses as one)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class FunctionDefinition(Body):
    name: FunctionName
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema; None: no arguments
    strict: StrictBool | None = None


class ToolDefinition(Body):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(Body):
    name: FunctionName


class NamedToolChoice(Body):
    type: Literal["function"]
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice
FunctionCallChoice = Literal["none", "auto"] | NamedFunction  # legacy ``function_call``


class FunctionCall(Body):
    name: StrictStr
    arguments: StrictStr


class ToolCallItem(Body):
    """A tool call in an assistant message of the history."""

    id: StrictStr
    type: Literal["function"] = "function"
    function: FunctionCall


class TextFormat(Body):
    type: Literal["text"]


class JsonObjectFormat(Body):
    type: Literal["json_object"]


class JsonSchemaSpec(Body):
    name: Annotated[StrictStr, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: StrictStr | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)


class JsonSchemaFormat(Body):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")
]


class StructuredOutputsBody(Body):
    """vLLM's own ``structured_outputs`` extension: exactly one constraint."""

    json_: dict[str, Any] | StrictStr | None = Field(default=None, alias="json")
    regex: StrictStr | None = None
    choice: list[StrictStr] | None = None
    grammar: StrictStr | None = None
    json_object: StrictBool | None = None
    structural_tag: StrictStr | None = None

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=True)
