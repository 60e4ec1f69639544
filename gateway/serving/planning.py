"""From a validated HTTP body to a ``GenerationPlan``: prompt token ids and sampling.

Everything a client can get wrong that pydantic cannot see (unsupported fields,
context length, bounds from settings) is rejected here with a precise 4xx.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from engine.protocol import SamplingSpec
from gateway.errors import (
    ContextLengthError,
    InvalidRequestError,
    UnsupportedParameterError,
)
from gateway.http.schemas import (
    UNSUPPORTED_CHAT_FIELDS,
    UNSUPPORTED_COMPLETION_FIELDS,
    ChatCompletionRequest,
    CompletionRequest,
    SamplingBody,
)
from gateway.serving.rendering import PromptRenderer, RenderedMessage
from gateway.settings import LimitSettings

Kind = Literal["chat", "completion"]
_ROLE_MAP = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class GenerationPlan:
    kind: Kind
    model: str
    prompt_token_ids: tuple[int, ...]
    sampling: SamplingSpec
    stream: bool
    include_usage: bool
    user: str | None = None

    def __post_init__(self) -> None:
        if not self.prompt_token_ids:
            raise ValueError("a plan needs prompt tokens")

    @property
    def worst_case_tokens(self) -> int:
        """Prompt plus every completion token the request may produce (for reservations)."""
        return len(self.prompt_token_ids) + self.sampling.max_tokens * self.sampling.n


def _reject_unsupported(body: SamplingBody, fields: tuple[str, ...]) -> None:
    for name in fields:
        if getattr(body, name, None) is not None:
            raise UnsupportedParameterError(
                f"'{name}' is not supported by this gateway yet", param=name
            )


def _stop(body: SamplingBody, limits: LimitSettings) -> tuple[str, ...]:
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > limits.max_stop_sequences:
        raise InvalidRequestError(
            f"at most {limits.max_stop_sequences} stop sequences are allowed", param="stop"
        )
    for item in stop:
        if not item or len(item) > limits.max_stop_length:
            raise InvalidRequestError(
                f"each stop sequence must have 1 to {limits.max_stop_length} characters",
                param="stop",
            )
    return tuple(stop)


def _max_tokens(
    requested: int | None, prompt_len: int, context: int, limits: LimitSettings
) -> int:
    room = context - prompt_len
    if room < 1:
        raise ContextLengthError(
            f"This model's maximum context length is {context} tokens. However, your "
            f"prompt has {prompt_len} tokens, leaving no room for a completion.",
            param="messages",
        )
    if requested is None:
        return min(room, limits.max_tokens_cap)
    if requested > limits.max_tokens_cap or requested > room:
        raise ContextLengthError(
            f"This model's maximum context length is {context} tokens. However, you "
            f"requested {prompt_len + requested} tokens ({prompt_len} in the prompt, "
            f"{requested} for the completion; this gateway caps completions at "
            f"{limits.max_tokens_cap}). Please reduce the prompt or max_tokens.",
            param="max_tokens",
        )
    return requested


def _sampling(
    body: SamplingBody, max_tokens: int, logprobs: int | None, limits: LimitSettings
) -> SamplingSpec:
    n = body.n or 1
    if n > limits.max_n:
        raise InvalidRequestError(f"n must be at most {limits.max_n}", param="n")
    temperature = 1.0 if body.temperature is None else body.temperature
    if n > 1 and temperature == 0:
        raise InvalidRequestError(
            "n > 1 needs temperature > 0: greedy decoding would return n identical choices",
            param="n",
        )
    return SamplingSpec(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        n=n,
        stop=_stop(body, limits),
        seed=body.seed,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        logprobs=logprobs,
    )


def _include_usage(body: SamplingBody) -> bool:
    options = body.stream_options
    if options is not None and options.include_usage is not None:
        return options.include_usage
    return True  # every stream ends with a usage chunk unless the client opts out


def _chat_messages(body: ChatCompletionRequest, limits: LimitSettings) -> list[RenderedMessage]:
    if not body.messages:
        raise InvalidRequestError("'messages' must contain at least one message", param="messages")
    if len(body.messages) > limits.max_messages:
        raise InvalidRequestError(
            f"at most {limits.max_messages} messages are allowed", param="messages"
        )
    rendered = []
    for i, message in enumerate(body.messages):
        role = _ROLE_MAP.get(message.role)
        if role is None or message.tool_calls:
            raise UnsupportedParameterError(
                f"messages[{i}]: role '{message.role}' and tool calls are not supported yet",
                param=f"messages.{i}.role",
            )
        rendered.append(RenderedMessage(role, message.text()))
    if sum(len(m.content) for m in rendered) > limits.max_prompt_chars:
        raise InvalidRequestError(
            f"the prompt exceeds {limits.max_prompt_chars} characters", param="messages"
        )
    return rendered


async def plan_chat(
    body: ChatCompletionRequest, renderer: PromptRenderer, context: int, limits: LimitSettings
) -> GenerationPlan:
    _reject_unsupported(body, UNSUPPORTED_CHAT_FIELDS)
    if body.max_tokens is not None and body.max_completion_tokens is not None:
        raise InvalidRequestError(
            "set max_tokens or max_completion_tokens, not both", param="max_tokens"
        )
    if body.top_logprobs is not None and not body.logprobs:
        raise InvalidRequestError("top_logprobs requires logprobs=true", param="top_logprobs")
    messages = _chat_messages(body, limits)
    ids = await asyncio.to_thread(renderer.render_chat, messages)
    requested = body.max_completion_tokens or body.max_tokens
    max_tokens = _max_tokens(requested, len(ids), context, limits)
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    return GenerationPlan(
        kind="chat",
        model=body.model,
        prompt_token_ids=tuple(ids),
        sampling=_sampling(body, max_tokens, logprobs, limits),
        stream=bool(body.stream),
        include_usage=_include_usage(body),
        user=body.user,
    )


def _is_token_list(prompt: object) -> bool:
    return isinstance(prompt, list) and all(isinstance(i, int) for i in prompt) and bool(prompt)


async def _completion_prompt(
    body: CompletionRequest, renderer: PromptRenderer, limits: LimitSettings
) -> list[int]:
    prompt: str | list[int]
    if isinstance(body.prompt, str) or _is_token_list(body.prompt):
        prompt = body.prompt  # type: ignore[assignment]
    elif len(body.prompt) == 1:
        prompt = body.prompt[0]  # type: ignore[assignment]
    else:
        raise UnsupportedParameterError(
            "exactly one prompt per request is supported; send one request per prompt",
            param="prompt",
        )
    if isinstance(prompt, str):
        if not prompt:
            raise InvalidRequestError("'prompt' must not be empty", param="prompt")
        if len(prompt) > limits.max_prompt_chars:
            raise InvalidRequestError(
                f"the prompt exceeds {limits.max_prompt_chars} characters", param="prompt"
            )
        return await asyncio.to_thread(renderer.encode, prompt)
    ids = list(prompt)
    if not ids:
        raise InvalidRequestError("'prompt' must not be empty", param="prompt")
    if any(not 0 <= i < renderer.vocab_size for i in ids):
        raise InvalidRequestError(
            f"prompt token ids must be in [0, {renderer.vocab_size})", param="prompt"
        )
    return ids


async def plan_completion(
    body: CompletionRequest, renderer: PromptRenderer, context: int, limits: LimitSettings
) -> GenerationPlan:
    _reject_unsupported(body, UNSUPPORTED_COMPLETION_FIELDS)
    if body.echo:
        raise UnsupportedParameterError("'echo' is not supported yet", param="echo")
    if body.best_of not in (None, 1):
        raise UnsupportedParameterError("'best_of' is not supported yet", param="best_of")
    ids = await _completion_prompt(body, renderer, limits)
    requested = body.max_tokens if body.max_tokens is not None else 16
    max_tokens = _max_tokens(requested, len(ids), context, limits)
    return GenerationPlan(
        kind="completion",
        model=body.model,
        prompt_token_ids=tuple(ids),
        sampling=_sampling(body, max_tokens, body.logprobs, limits),
        stream=bool(body.stream),
        include_usage=_include_usage(body),
        user=body.user,
    )
