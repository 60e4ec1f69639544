"""The counts a request may hold, checked first: before any schema is checked, template
rendered or text tokenised, in time linear in the number of items, never their text.

Each bound is a setting (``limits``); a request past one is a 400 naming the field.
"""

from __future__ import annotations

from gateway.errors import InvalidRequestError
from gateway.openai.bodies import ChatCompletionRequest, SamplingBody
from gateway.settings import LimitSettings


def _at_most(count: int, bound: int, what: str, param: str) -> None:
    if count > bound:
        raise InvalidRequestError(f"at most {bound} {what} are allowed, got {count}",
                                  param=param)


def _chat_counts(body: ChatCompletionRequest, limits: LimitSettings) -> None:
    _at_most(len(body.messages), limits.max_messages, "messages", "messages")
    parts = 0
    for i, message in enumerate(body.messages):
        if isinstance(message.content, list):
            parts += len(message.content)
            _at_most(parts, limits.max_content_parts, "content parts over all messages",
                     f"messages.{i}.content")
    _at_most(len(body.tools or ()), limits.max_tools, "tools", "tools")
    _at_most(len(body.functions or ()), limits.max_tools, "functions", "functions")


def check_counts(body: SamplingBody, limits: LimitSettings) -> None:
    """Every count bound of a chat or text completion request (a named 400)."""
    if isinstance(body, ChatCompletionRequest):
        _chat_counts(body, limits)
    stop = body.stop if isinstance(body.stop, list) else ()
    _at_most(len(stop), limits.max_stop_sequences, "stop sequences", "stop")
    _at_most(len(body.logit_bias or {}), limits.max_logit_bias, "logit_bias entries",
             "logit_bias")
