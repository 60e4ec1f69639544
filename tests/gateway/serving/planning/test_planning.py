"""Planning: bodies to plans, and every mistake pydantic cannot see as a named 400."""

from __future__ import annotations

import json

import pytest

from engine.fake import CharRenderer
from gateway.errors import InvalidRequestError
from gateway.openai.bodies import ChatCompletionRequest, CompletionRequest
from gateway.serving.planning.chat import ModelView, plan_chat
from gateway.serving.planning.completion import plan_completion
from gateway.serving.planning.tools import forced_output
from gateway.settings import LimitSettings

LIMITS = LimitSettings()
VIEW = ModelView(CharRenderer(), 2048, tool_parser="hermes")
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}


def chat(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields})


async def test_required_when_planned_then_engine_is_constrained_to_a_list_of_offered_calls(
) -> None:
    plan = await plan_chat(chat(tools=[WEATHER], tool_choice="required",
                                parallel_tool_calls=False), VIEW, LIMITS)
    assert plan.tools is not None and plan.tools.mode == "required"
    structured = plan.sampling.structured
    assert structured is not None and structured.kind == "json"
    schema = json.loads(structured.spec)
    assert schema["type"] == "array" and schema["minItems"] == 1 and schema["maxItems"] == 1
    [call] = schema["items"]["anyOf"]
    assert call["properties"]["name"]["enum"] == ["get_weather"]
    assert plan.constraint_param == "tool_choice"


async def test_named_when_planned_then_constraint_is_the_functions_parameters() -> None:
    named = {"type": "function", "function": {"name": "get_weather"}}
    plan = await plan_chat(chat(tools=[WEATHER], tool_choice=named), VIEW, LIMITS)
    assert plan.tools is not None and plan.tools.named == "get_weather"
    assert plan.sampling.structured is not None
    assert json.loads(plan.sampling.structured.spec) == WEATHER["function"]["parameters"]  # type: ignore[index]


async def test_tool_choice_none_when_tools_given_then_no_tool_plan_and_no_constraint() -> None:
    plan = await plan_chat(chat(tools=[WEATHER], tool_choice="none"), VIEW, LIMITS)
    assert plan.tools is None and plan.sampling.structured is None


async def test_auto_when_planned_then_no_constraint_and_the_models_parser() -> None:
    plan = await plan_chat(chat(tools=[WEATHER]), VIEW, LIMITS)
    assert plan.tools is not None and plan.tools.parser == "hermes"
    assert plan.sampling.structured is None and forced_output(plan.tools) is None


async def test_legacy_functions_when_planned_then_mapped_onto_a_named_tool_plan() -> None:
    body = ChatCompletionRequest.model_validate({
        "model": "m", "messages": [{"role": "user", "content": "hi"}],
        "functions": [WEATHER["function"]], "function_call": {"name": "get_weather"}})
    plan = await plan_chat(body, VIEW, LIMITS)
    assert plan.tools is not None and plan.tools.legacy and plan.tools.named == "get_weather"


async def test_relayed_model_when_tools_given_then_left_to_the_upstream() -> None:
    relayed = ModelView(CharRenderer(), 2048, relayed=True)
    plan = await plan_chat(chat(tools=[WEATHER]), relayed, LIMITS)
    assert plan.tools is None


@pytest.mark.parametrize(("fields", "param"), [
    ({"logprobs": True, "top_logprobs": 20, "n": 16, "max_tokens": 2000}, "top_logprobs"),
    ({"min_tokens": 50, "max_tokens": 10}, "min_tokens"),
    ({"stop_token_ids": [0x110000]}, "stop_token_ids"),
    ({"allowed_token_ids": []}, "allowed_token_ids"),
    ({"structured_outputs": {"regex": "a", "choice": ["b"]}}, "structured_outputs"),
    ({"stream": True, "stream_options": {"continuous_usage_stats": True}},
     "stream_options.continuous_usage_stats"),
    ({"continue_final_message": True}, "continue_final_message"),
])
async def test_chat_when_bound_or_combination_is_wrong_then_named_400(
    fields: dict[str, object], param: str
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        await plan_chat(chat(**fields), VIEW, LIMITS)
    assert refused.value.param == param


async def test_vllm_extensions_when_set_then_carried_to_the_engine() -> None:
    plan = await plan_chat(chat(top_k=5, min_p=0.1, repetition_penalty=1.2, min_tokens=2,
                                stop_token_ids=[7], bad_words=["x"], ignore_eos=True,
                                logit_bias={"65": -100}), VIEW, LIMITS)
    s = plan.sampling
    assert (s.top_k, s.min_p, s.repetition_penalty, s.min_tokens) == (5, 0.1, 1.2, 2)
    assert (s.stop_token_ids, s.bad_words, s.ignore_eos) == ((7,), ("x",), True)
    assert s.logit_bias == ((65, -100.0),)


async def test_completion_when_several_prompts_then_one_plan_with_each_prompt() -> None:
    body = CompletionRequest.model_validate({"model": "m", "prompt": ["ab", "ABC"]})
    plan = await plan_completion(body, VIEW, LIMITS)
    assert plan.prompts == ((97, 98), (65, 66, 67))
    assert plan.prompt_tokens == 5 and plan.choices == 2
    assert plan.worst_case_tokens == 5 + 2 * plan.sampling.max_tokens


async def test_completion_when_one_of_several_prompts_is_empty_then_400_names_it() -> None:
    body = CompletionRequest.model_validate({"model": "m", "prompt": ["ab", ""]})
    with pytest.raises(InvalidRequestError) as refused:
        await plan_completion(body, VIEW, LIMITS)
    assert refused.value.param == "prompt.1"


def _tool_with_defs(name: str, unit: dict[str, object]) -> dict[str, object]:
    return {"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": {"unit": {"$ref": "#/$defs/unit"}},
        "required": ["unit"], "$defs": {"unit": unit}}}}


async def test_required_when_tools_use_defs_then_references_resolve_in_the_combined_schema(
) -> None:
    from jsonschema import Draft202012Validator

    unit = {"type": "string", "enum": ["c", "f"]}
    plan = await plan_chat(chat(tools=[_tool_with_defs("a", unit), _tool_with_defs("b", unit)],
                                tool_choice="required"), VIEW, LIMITS)
    assert plan.sampling.structured is not None
    schema = json.loads(plan.sampling.structured.spec)
    assert schema["$defs"] == {"unit": unit}
    validator = Draft202012Validator(schema)
    assert validator.is_valid([{"name": "a", "parameters": {"unit": "c"}}])
    assert not validator.is_valid([{"name": "b", "parameters": {"unit": "kelvin"}}])


async def test_required_when_tools_define_one_name_differently_then_400_names_the_tool(
) -> None:
    tools = [_tool_with_defs("a", {"type": "string"}), _tool_with_defs("b", {"type": "integer"})]
    with pytest.raises(InvalidRequestError) as caught:
        await plan_chat(chat(tools=tools, tool_choice="required"), VIEW, LIMITS)
    assert caught.value.param == "tools.1.function.parameters"
