"""A chat completion body to a plan: messages through the model's chat template.

``build_chat_plan`` is plain CPU work (schemas checked, messages rendered and tokenised):
the pipeline runs it where ``gateway/serving/offload`` decides, off the event loop unless
the request is light.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import InvalidRequestError
from gateway.openai.bodies import REFUSED_CHAT_FIELDS, ChatCompletionRequest, ChatMessage
from gateway.serving.plan import GenerationPlan, ToolPlan, ToolSpec
from gateway.serving.planning.bounds import check_counts
from gateway.serving.planning.progress import Mark, unmarked
from gateway.serving.planning.sampling import max_tokens, refuse, sampling_spec, stream_usage
from gateway.serving.planning.structured import structured_output
from gateway.serving.planning.tools import forced_output, template_tools, tool_plan
from gateway.serving.rendering import ChatPrompt, PromptRenderer, RenderedMessage, RenderedToolCall
from gateway.settings import LimitSettings

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
          "tool": "tool", "function": "tool"}
# apply_chat_template's own arguments: a client's template variables may not override them.
_RESERVED_TEMPLATE_KWARGS = frozenset({
    "conversation", "messages", "tools", "documents", "chat_template", "add_generation_prompt",
    "continue_final_message", "tokenize", "padding", "truncation", "max_length",
    "return_tensors", "return_dict", "return_assistant_tokens_mask", "tokenizer_kwargs"})


@dataclass(frozen=True)
class ModelView:
    """What planning needs to know of the model a request names."""

    renderer: PromptRenderer
    context: int
    tool_parser: str | None = None
    relayed: bool = False  # an upstream API reads tools itself: plan only the token count
    reasoning_switch: str | None = None  # the template variable reasoning_effort sets


def _tool_calls(message: ChatMessage, i: int) -> tuple[RenderedToolCall, ...]:
    calls = [RenderedToolCall(c.id, c.function.name, c.function.arguments)
             for c in message.tool_calls or ()]
    if message.function_call is not None:
        calls.append(RenderedToolCall(f"call_{i}", message.function_call.name,
                                      message.function_call.arguments))
    if calls and message.role != "assistant":
        raise InvalidRequestError(f"messages[{i}]: only assistant messages carry tool calls",
                                  param=f"messages.{i}.tool_calls")
    return tuple(calls)


def _message(message: ChatMessage, i: int) -> RenderedMessage:
    role = _ROLES[message.role]
    calls = _tool_calls(message, i)
    if message.role == "tool" and not message.tool_call_id:
        raise InvalidRequestError(f"messages[{i}]: a tool message needs tool_call_id",
                                  param=f"messages.{i}.tool_call_id")
    if message.content is None and not calls and message.role != "assistant":
        raise InvalidRequestError(f"messages[{i}]: content is required for role "
                                  f"'{message.role}'", param=f"messages.{i}.content")
    return RenderedMessage(role, message.text(), calls, message.tool_call_id,
                           message.name if message.role in ("function", "tool") else None)


def _template_kwargs(body: ChatCompletionRequest,
                     switch: str | None) -> tuple[tuple[str, object], ...]:
    kwargs = body.chat_template_kwargs or {}
    bad = sorted(k for k in kwargs if k in _RESERVED_TEMPLATE_KWARGS or not k.isidentifier())
    if bad:
        raise InvalidRequestError(f"chat_template_kwargs may not set {bad}",
                                  param="chat_template_kwargs")
    effort = body.reasoning_effort
    if effort is None:
        return tuple(kwargs.items())
    if switch is None:
        raise InvalidRequestError(f"model '{body.model}' declares no reasoning switch: "
                                  "reasoning_effort is not supported", param="reasoning_effort")
    thinking = effort not in ("none", "minimal")  # the effort itself, for templates reading it
    return tuple({**kwargs, switch: thinking, "reasoning_effort": effort}.items())


def _prompt(body: ChatCompletionRequest, tools: tuple[dict[str, object], ...],
            limits: LimitSettings, switch: str | None = None) -> ChatPrompt:
    if not body.messages:
        raise InvalidRequestError("'messages' must contain at least one message", param="messages")
    if len(body.messages) > limits.max_messages:
        raise InvalidRequestError(f"at most {limits.max_messages} messages are allowed",
                                  param="messages")
    continue_final = bool(body.continue_final_message)
    if continue_final and (body.add_generation_prompt or body.messages[-1].role != "assistant"):
        raise InvalidRequestError("continue_final_message needs a final assistant message and "
                                  "add_generation_prompt false", param="continue_final_message")
    prompt = ChatPrompt(
        tuple(_message(m, i) for i, m in enumerate(body.messages)), tools,
        _template_kwargs(body, switch),
        add_generation_prompt=not continue_final and body.add_generation_prompt is not False,
        continue_final_message=continue_final)
    if prompt.chars > limits.max_prompt_chars:
        raise InvalidRequestError(f"the prompt exceeds {limits.max_prompt_chars} characters",
                                  param="messages")
    return prompt


def _checked(body: ChatCompletionRequest) -> None:
    refuse(body, REFUSED_CHAT_FIELDS)
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise InvalidRequestError("set max_tokens or max_completion_tokens, not both",
                                  param="max_tokens")
    if body.top_logprobs is not None and not body.logprobs:
        raise InvalidRequestError("top_logprobs requires logprobs=true", param="top_logprobs")


def _constraint_field(body: ChatCompletionRequest) -> str:
    return "structured_outputs" if body.structured_outputs is not None else "response_format"


def build_chat_plan(body: ChatCompletionRequest, model: ModelView, limits: LimitSettings,
                    mark: Mark = unmarked) -> GenerationPlan:
    check_counts(body, limits)  # cheapest first: counts before any schema or text
    _checked(body)
    tools: ToolPlan | None = None
    shown: tuple[ToolSpec, ...] = ()
    if not model.relayed:
        mark("functions" if body.functions is not None else "tools")
        tools, shown = tool_plan(body, model.tool_parser, limits)
    mark(_constraint_field(body))
    structured, constraint_param = structured_output(body, limits)
    if tools is not None and (forced := forced_output(tools)) is not None:
        if structured is not None:
            raise InvalidRequestError(
                f"{constraint_param} cannot be combined with a required or named tool choice",
                param=constraint_param)
        structured, constraint_param = forced, "tool_choice"
    mark("messages")
    prompt = _prompt(body, template_tools(shown), limits,
                     None if model.relayed else model.reasoning_switch)
    ids = model.renderer.render_chat(prompt)
    budget = max_tokens(body.max_completion_tokens or body.max_tokens, len(ids), model.context,
                        limits, "messages")
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    return GenerationPlan(
        kind="chat", model=body.model, prompts=(tuple(ids),),
        sampling=sampling_spec(body, budget, logprobs, limits, model.renderer.vocab_size,
                               structured),
        stream=bool(body.stream), stream_usage=stream_usage(body), tools=tools,
        constraint_param=constraint_param, user=body.user)


async def plan_chat(body: ChatCompletionRequest, model: ModelView,
                    limits: LimitSettings) -> GenerationPlan:
    """``build_chat_plan`` on the caller's event loop (a light request, a test)."""
    return build_chat_plan(body, model, limits)

