"""The response-cache key: every output-changing parameter, the tenant, not the framing."""

from __future__ import annotations

import dataclasses

from engine.protocol import SamplingSpec, StructuredOutput
from gateway.caching.key import is_repeatable, response_key
from gateway.serving.plan import GenerationPlan, ToolPlan, ToolSpec

PLAN = GenerationPlan(kind="chat", model="m", prompts=((1, 2, 3),),
                      sampling=SamplingSpec(max_tokens=8, temperature=0.0), stream=False,
                      stream_usage="final")
TOOLS = ToolPlan("required", (ToolSpec("get_weather", None, '{"type":"object"}'),))


def _with_sampling(**changes: object) -> GenerationPlan:
    return dataclasses.replace(PLAN, sampling=dataclasses.replace(PLAN.sampling, **changes))


def test_key_when_any_sampling_parameter_changes_then_it_changes() -> None:
    base = response_key("acme", PLAN)
    changed = [
        _with_sampling(max_tokens=9), _with_sampling(stop=("x",)), _with_sampling(seed=1),
        _with_sampling(top_p=0.5), _with_sampling(presence_penalty=0.1),
        _with_sampling(frequency_penalty=0.1), _with_sampling(logprobs=2),
        _with_sampling(temperature=0.5, seed=3), _with_sampling(n=2, temperature=0.5, seed=3),
        _with_sampling(logit_bias=((5, -100.0),)), _with_sampling(top_k=5),
        _with_sampling(structured=StructuredOutput("json_object")),
        _with_sampling(structured=StructuredOutput("json", '{"type":"object"}')),
        dataclasses.replace(PLAN, tools=TOOLS),
        dataclasses.replace(PLAN, tools=dataclasses.replace(TOOLS, parallel=False)),
        dataclasses.replace(PLAN, prompts=((1, 2, 4),)),
        dataclasses.replace(PLAN, model="other"), dataclasses.replace(PLAN, kind="completion"),
    ]
    keys = {response_key("acme", plan) for plan in changed}
    assert base not in keys and len(keys) == len(changed)


def test_key_when_only_streaming_or_user_differs_then_same() -> None:
    same = dataclasses.replace(PLAN, stream=True, stream_usage="none", user="u1")
    assert response_key("acme", same) == response_key("acme", PLAN)


def test_key_when_tenant_differs_then_different() -> None:
    assert response_key("acme", PLAN) != response_key("globex", PLAN)


def test_repeatable_when_greedy_or_seeded_only() -> None:
    assert is_repeatable(PLAN)
    assert is_repeatable(_with_sampling(temperature=0.7, seed=5))
    assert not is_repeatable(_with_sampling(temperature=0.7))


def test_repeatable_when_several_prompts_then_not() -> None:
    assert not is_repeatable(dataclasses.replace(PLAN, prompts=((1, 2), (3, 4))))


def test_repeatable_when_logprobs_are_asked_then_not_cached() -> None:
    assert not is_repeatable(_with_sampling(logprobs=0))
