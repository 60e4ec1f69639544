"""OpenAI request bodies, validated at the edge (pydantic stops here).

Fields are OpenAI's, plus the sampling extensions vLLM's own OpenAI server accepts
(``top_k``, ``min_p``, ``structured_outputs``, ...). A field this gateway cannot honour is
still declared, so that planning refuses it with a 400 naming it (``REFUSED_*``); a field
nobody declares is a 400 too (``extra="forbid"``). Nothing is accepted and ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr

from gateway.openai.tool_bodies import (
    Body,
    FunctionCall,
    FunctionCallChoice,
    FunctionDefinition,
    ResponseFormat,
    StructuredOutputsBody,
    ToolCallItem,
    ToolChoice,
    ToolDefinition,
)

# Declared so that a client setting them gets a 400 naming the field, with the reason.
REFUSED_CHAT_FIELDS: dict[str, str] = {
    "audio": "audio output is not supported",
    "prediction": "predicted outputs are not supported",
    "web_search_options": "web search is not supported",
    "echo": "echo is not supported for chat completions",
    "chat_template": "a request's own chat template is not accepted (as vLLM's default)",
    "cache_salt": "the gateway salts the prefix cache per tenant itself",
    "priority": "request priority is set by the gateway (batch lines run behind online "
                "traffic)",
    "request_id": "the gateway assigns request ids (see the x-request-id header)",
    "use_beam_search": "beam search is not supported",
}
REFUSED_COMPLETION_FIELDS: dict[str, str] = {
    "suffix": "suffix (fill-in-the-middle) is not supported",
    "echo": "echo is not supported",
    "cache_salt": REFUSED_CHAT_FIELDS["cache_salt"],
    "priority": REFUSED_CHAT_FIELDS["priority"],
    "request_id": REFUSED_CHAT_FIELDS["request_id"],
    "use_beam_search": REFUSED_CHAT_FIELDS["use_beam_search"],
}

Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(gt=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
TokenId = Annotated[StrictInt, Field(ge=0)]
# vLLM's own OpenAI server bounds seeds to int64 (its engine's transport carries no more).
Seed = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]


class StreamOptions(Body):
    include_usage: StrictBool | None = None
    include_obfuscation: StrictBool | None = None
    continuous_usage_stats: StrictBool | None = None  # vLLM: usage on every chunk


class TextPart(Body):
    type: Literal["text"]
    text: StrictStr


class RefusalPart(Body):
    type: Literal["refusal"]
    refusal: StrictStr


class ChatMessage(Body):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: StrictStr | list[TextPart | RefusalPart] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCallItem] | None = None
    tool_call_id: StrictStr | None = None
    function_call: FunctionCall | None = None  # legacy assistant call
    refusal: StrictStr | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text if isinstance(p, TextPart) else p.refusal for p in self.content)


class SamplingBody(Body):
    """What every generating endpoint shares."""

    model: StrictStr = Field(min_length=1)
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: PositiveInt | None = None
    stop: StrictStr | list[StrictStr] | None = None
    seed: Seed | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[StrictStr, StrictFloat] | None = None  # strict floats take ints too
    user: StrictStr | None = None
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    # vLLM's sampling extensions (its OpenAI server accepts them too)
    top_k: StrictInt | None = None
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0.0, le=2.0)] | None = None
    min_tokens: Annotated[StrictInt, Field(ge=0)] | None = None
    stop_token_ids: list[TokenId] | None = None
    include_stop_str_in_output: StrictBool | None = None
    ignore_eos: StrictBool | None = None
    skip_special_tokens: StrictBool | None = None
    spaces_between_special_tokens: StrictBool | None = None
    bad_words: list[Annotated[StrictStr, Field(min_length=1)]] | None = None  # vLLM: no ""
    allowed_token_ids: list[TokenId] | None = None
    structured_outputs: StructuredOutputsBody | None = None
    # declared to be refused by name (REFUSED_*)
    cache_salt: Any = None
    priority: Any = None
    request_id: Any = None
    use_beam_search: Any = None


class ChatCompletionRequest(SamplingBody):
    messages: list[ChatMessage]
    max_completion_tokens: PositiveInt | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=20)] | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    functions: list[FunctionDefinition] | None = None  # legacy, mapped onto tools
    function_call: FunctionCallChoice | None = None  # legacy, mapped onto tool_choice
    response_format: ResponseFormat | None = None
    modalities: list[Literal["text"]] | None = None  # text is what this gateway produces
    service_tier: Literal["auto", "default"] | None = None  # one tier here: "default"
    store: Literal[False] | None = None  # stored chat completions are not offered
    chat_template_kwargs: dict[str, Any] | None = None  # vLLM: extra template variables
    add_generation_prompt: StrictBool | None = None  # vLLM
    continue_final_message: StrictBool | None = None  # vLLM
    # declared to be refused by name (REFUSED_CHAT_FIELDS)
    audio: Any = None
    prediction: Any = None
    web_search_options: Any = None
    # a reasoning model's template switch (reasoning_switch in its settings), else a 400
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    # tags the ledger keeps (each pair as key:value); bounded as OpenAI's (16 pairs)
    metadata: dict[StrictStr, StrictStr] | None = None
    echo: Any = None
    chat_template: Any = None


class CompletionRequest(SamplingBody):
    prompt: StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]
    logprobs: Annotated[StrictInt, Field(ge=0, le=5)] | None = None
    best_of: PositiveInt | None = None
    # declared to be refused by name (REFUSED_COMPLETION_FIELDS)
    suffix: Any = None
    echo: Any = None
