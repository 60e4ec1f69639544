"""A text completion body to a plan: one prompt or several (text or token ids), as OpenAI.
``build_completion_plan`` is plain CPU work, run where ``gateway/serving/offload`` decides."""

from __future__ import annotations

from gateway.errors import InvalidRequestError, UnsupportedParameterError
from gateway.openai.bodies import REFUSED_COMPLETION_FIELDS, CompletionRequest
from gateway.serving.plan import GenerationPlan
from gateway.serving.planning.bounds import check_counts
from gateway.serving.planning.chat import ModelView
from gateway.serving.planning.inputs import as_inputs
from gateway.serving.planning.progress import Mark, unmarked
from gateway.serving.planning.sampling import max_tokens, refuse, sampling_spec, stream_usage
from gateway.serving.planning.structured import structured_output
from gateway.serving.rendering import PromptRenderer
from gateway.settings import LimitSettings

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


def _ids(prompt: str | list[int], renderer: PromptRenderer, limits: LimitSettings,
         param: str) -> tuple[int, ...]:
    if not prompt:
        raise InvalidRequestError("a prompt must not be empty", param=param)
    if isinstance(prompt, str):
        if len(prompt) > limits.max_prompt_chars:
            raise InvalidRequestError(f"the prompt exceeds {limits.max_prompt_chars} characters",
                                      param=param)
        return tuple(renderer.encode(prompt))
    if any(not 0 <= i < renderer.vocab_size for i in prompt):
        raise InvalidRequestError(f"prompt token ids must be in [0, {renderer.vocab_size})",
                                  param=param)
    return tuple(prompt)


def _prompt_ids(prompts: list[str | list[int]], model: ModelView, limits: LimitSettings,
                mark: Mark) -> list[tuple[int, ...]]:
    many, ids = len(prompts) > 1, []
    for i, prompt in enumerate(prompts):
        param = f"prompt.{i}" if many else "prompt"
        mark(param)
        ids.append(_ids(prompt, model.renderer, limits, param))
    return ids


def build_completion_plan(body: CompletionRequest, model: ModelView, limits: LimitSettings,
                          mark: Mark = unmarked) -> GenerationPlan:
    check_counts(body, limits)  # cheapest first: counts before any schema or text
    refuse(body, REFUSED_COMPLETION_FIELDS)
    if body.best_of not in (None, 1):
        raise UnsupportedParameterError("'best_of' > 1 is not supported", param="best_of")
    prompts = as_inputs(body.prompt)
    if not prompts:
        raise InvalidRequestError("'prompt' must not be empty", param="prompt")
    if len(prompts) > limits.max_prompts:
        raise InvalidRequestError(f"at most {limits.max_prompts} prompts per request",
                                  param="prompt")
    ids = _prompt_ids(prompts, model, limits, mark)
    requested = body.max_tokens if body.max_tokens is not None else DEFAULT_MAX_TOKENS
    budget = max_tokens(requested, max(len(p) for p in ids), model.context, limits, "prompt")
    mark("structured_outputs")
    structured, constraint_param = structured_output(body, limits)
    return GenerationPlan(
        kind="completion", model=body.model, prompts=tuple(ids),
        sampling=sampling_spec(body, budget, body.logprobs, limits, model.renderer.vocab_size,
                               structured),
        stream=bool(body.stream), stream_usage=stream_usage(body),
        constraint_param=constraint_param, user=body.user)


async def plan_completion(body: CompletionRequest, model: ModelView,
                          limits: LimitSettings) -> GenerationPlan:
    """``build_completion_plan`` on the caller's event loop (a light request, a test)."""
    return build_completion_plan(body, model, limits)
