"""The Responses API request (``POST /v1/responses``), as OpenAI defines it.

Items this gateway can answer are typed; what it cannot honour is declared so that it is
refused with a 400 naming it (``REFUSED_RESPONSE_FIELDS``), never accepted and ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictStr

from gateway.openai.bodies import Penalty, PositiveInt, Seed, Temperature, TopP
from gateway.openai.tool_bodies import Body, FunctionName

REFUSED_RESPONSE_FIELDS: dict[str, str] = {
    "include": "no extra output data can be included",
    "background": "background responses are not offered",
    "conversation": "conversations are not offered; chain responses with previous_response_id",
    "prompt": "stored prompt templates are not offered",
    "top_logprobs": "logprobs are not offered through the Responses API; use chat completions",
    "max_tool_calls": "max_tool_calls is not supported",
}


class ReasoningOptions(Body):
    """The effort maps to a reasoning model's template switch, as chat's reasoning_effort."""

    effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None  # refused: no summaries


class InputText(Body):
    type: Literal["input_text"]
    text: StrictStr


class OutputText(Body):
    type: Literal["output_text"]
    text: StrictStr
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class Refusal(Body):
    type: Literal["refusal"]
    refusal: StrictStr


Content = Annotated[InputText | OutputText | Refusal, Field(discriminator="type")]


class MessageItem(Body):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: StrictStr | list[Content]
    id: StrictStr | None = None
    status: StrictStr | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(p.refusal if isinstance(p, Refusal) else p.text for p in self.content)


class FunctionCallItem(Body):
    type: Literal["function_call"]
    call_id: StrictStr
    name: StrictStr
    arguments: StrictStr
    id: StrictStr | None = None
    status: StrictStr | None = None


class FunctionCallOutputItem(Body):
    type: Literal["function_call_output"]
    call_id: StrictStr
    output: StrictStr
    id: StrictStr | None = None
    status: StrictStr | None = None


InputItem = MessageItem | FunctionCallItem | FunctionCallOutputItem


class FunctionTool(Body):
    type: Literal["function"]
    name: FunctionName
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class NamedFunctionChoice(Body):
    type: Literal["function"]
    name: FunctionName


class TextFormatText(Body):
    type: Literal["text"]


class TextFormatJsonObject(Body):
    type: Literal["json_object"]


class TextFormatJsonSchema(Body):
    type: Literal["json_schema"]
    name: Annotated[StrictStr, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    schema_: dict[str, Any] = Field(alias="schema")
    description: StrictStr | None = None
    strict: StrictBool | None = None


TextFormat = Annotated[TextFormatText | TextFormatJsonObject | TextFormatJsonSchema,
                       Field(discriminator="type")]


class TextOptions(Body):
    format: TextFormat | None = None
    verbosity: Literal["medium"] | None = None  # the one verbosity a model without it has


class ResponsesRequest(Body):
    model: StrictStr = Field(min_length=1)
    input: StrictStr | list[InputItem]
    instructions: StrictStr | None = None
    max_output_tokens: PositiveInt | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedFunctionChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    text: TextOptions | None = None
    stream: StrictBool | None = None
    store: StrictBool | None = None  # default true, as OpenAI
    previous_response_id: StrictStr | None = None
    metadata: dict[StrictStr, StrictStr] | None = None  # kept with the stored response
    user: StrictStr | None = None
    service_tier: Literal["auto", "default"] | None = None
    truncation: Literal["disabled"] | None = None
    seed: Seed | None = None
    reasoning: ReasoningOptions | None = None
    # declared to be refused by name (REFUSED_RESPONSE_FIELDS)
    include: Any = None
    background: Any = None
    conversation: Any = None
    prompt: Any = None
    top_logprobs: Any = None
    max_tool_calls: Any = None
    stream_options: dict[str, Any] | None = None
