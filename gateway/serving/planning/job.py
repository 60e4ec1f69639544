"""One request's planning as a job: everything it needs but the renderer (named, so a
worker process holds its own copy), and how heavy it is.

Light jobs (no JSON schema or tools to check, little text) are planned on the event loop
at once; the rest in the planning pool (``gateway/serving/offload``). ``weight`` reads
lengths off the parsed body, in time linear in the number of messages or inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.openai.bodies import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    SamplingBody,
)
from gateway.openai.embedding_bodies import EmbeddingsRequest
from gateway.openai.tool_bodies import JsonSchemaFormat
from gateway.serving.plan import GenerationPlan
from gateway.serving.planning.chat import ModelView, build_chat_plan
from gateway.serving.planning.completion import build_completion_plan
from gateway.serving.planning.embeddings import EmbeddingPlan, build_embedding_plan
from gateway.serving.planning.inputs import Input, as_inputs
from gateway.serving.planning.progress import Mark, unmarked
from gateway.serving.rendering import PromptRenderer
from gateway.settings import LimitSettings

Body = ChatCompletionRequest | CompletionRequest | EmbeddingsRequest
Planned = GenerationPlan | EmbeddingPlan
# Rendering costs per message about what this many characters of text cost (templates
# loop over messages: 512 one-word messages took longer than one of 100,000 characters).
MESSAGE_CHARS = 64


def upstream_renderer(model: str) -> str:
    """The name an upstream model's token counter goes by among the renderers."""
    return f"upstream:{model}"


@dataclass(frozen=True)
class PlanJob:
    body: Body
    # The renderer's name among the planner's (a model, or upstream:<model>), or a renderer
    # of this request's own (a relayed request's counter: it pickles cheaply)
    renderer: str | PromptRenderer
    context: int
    limits: LimitSettings
    tool_parser: str | None = None
    relayed: bool = False  # an upstream API: plan the token count only
    dimensions: tuple[int, ...] = ()  # embeddings: the sizes the model can shorten to
    reasoning_switch: str | None = None  # the template variable reasoning_effort sets

    def __post_init__(self) -> None:
        if self.renderer == "" or self.context < 1:
            raise ValueError("a planning job names its renderer and the model's context")

    def run(self, renderers: Mapping[str, Any], mark: Mark = unmarked) -> Planned:
        renderer: Any = (renderers[self.renderer] if isinstance(self.renderer, str)
                         else self.renderer)
        if isinstance(self.body, EmbeddingsRequest):
            return build_embedding_plan(self.body, renderer, self.context, self.dimensions,
                                        self.limits, mark)
        view = ModelView(renderer, self.context, self.tool_parser, self.relayed,
                         self.reasoning_switch)
        if isinstance(self.body, ChatCompletionRequest):
            return build_chat_plan(self.body, view, self.limits, mark)
        return build_completion_plan(self.body, view, self.limits, mark)


def _inputs(items: list[Input]) -> int:
    return sum(len(item) for item in items)


def _sampling(body: SamplingBody) -> int:
    return (len(body.logit_bias or {}) + len(body.allowed_token_ids or ())
            + len(body.stop_token_ids or ()) + sum(len(w) for w in body.bad_words or ()))


def _message(message: ChatMessage) -> int:
    calls = [c.function.arguments for c in message.tool_calls or ()]
    if message.function_call is not None:
        calls.append(message.function_call.arguments)
    return MESSAGE_CHARS + len(message.text()) + sum(len(c) for c in calls)


def weight(body: Body) -> int | None:
    """Planning work in characters to render or tokenise (and one per token id, logit bias
    entry or bad word character); None: a JSON schema or tools to check, never light."""
    if isinstance(body, EmbeddingsRequest):
        return _inputs(as_inputs(body.input))
    if body.structured_outputs is not None:
        return None
    if isinstance(body, CompletionRequest):
        return _sampling(body) + _inputs(as_inputs(body.prompt))
    if (body.tools or body.functions or body.chat_template_kwargs
            or isinstance(body.response_format, JsonSchemaFormat)):
        return None
    return _sampling(body) + sum(_message(m) for m in body.messages)
