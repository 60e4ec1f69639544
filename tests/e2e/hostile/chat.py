"""Chat completion bodies: messages, content parts, tools, formats and template fields."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.e2e.hostile.changes import (
    FUNCTION_NAMES,
    PROMPTS,
    Change,
    Json,
    field,
    sampling_changes,
    with_changes,
)
from tests.e2e.hostile.strategies import any_text, hostile_text, huge_ints, json_schemas


def _part() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda t: {"type": "text", "text": t}, any_text()),
        st.sampled_from([
            {"type": "image_url", "image_url": {"url": "http://127.0.0.1:1/x.png"}},
            {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
            {"type": "file", "file": {"file_id": "file-x"}}, {"type": "text"},
            {"type": "text", "text": None}, {}, {"type": "refusal", "refusal": "no"},
            {"type": "video_url", "video_url": {"url": "x"}}, "text"]),
        st.builds(lambda kind: {"type": kind, "text": "hi"}, hostile_text(8)))


def _tool_call() -> st.SearchStrategy[Any]:
    return st.builds(lambda i, name, args: {"id": i, "type": "function",
                                            "function": {"name": name, "arguments": args}},
                     st.sampled_from(["call_1", "", "\ud800"]), st.sampled_from(FUNCTION_NAMES),
                     st.sampled_from(["{}", "not json", "", "[1]", "{\"a\":NaN}", "\ud800"]))


def _message() -> st.SearchStrategy[Any]:
    role = st.sampled_from(["user", "system", "developer", "assistant", "tool", "function",
                            "robot", ""])
    return st.one_of(
        st.builds(lambda r, c: {"role": r, "content": c}, role, any_text()),
        st.builds(lambda r, parts: {"role": r, "content": parts}, role,
                  st.lists(_part(), max_size=3)),
        st.builds(lambda calls: {"role": "assistant", "content": None, "tool_calls": calls},
                  st.lists(_tool_call(), max_size=2)),
        st.builds(lambda n: {"role": "user", "content": "hi", "name": n}, hostile_text()),
        st.sampled_from([{"role": "tool", "content": "22 degrees"}, {"role": "user"},
                         {"role": "function", "content": "x"}, {"content": "hi"},
                         {"role": "user", "content": None}, "hello", None]))


def _messages() -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(_message(), max_size=4),
                     st.just([{"role": "user", "content": "hi"}] * 600),
                     st.just([{"role": "system", "content": "Be brief."}]),
                     st.just({"role": "user", "content": "hi"}))


def _tool(parameters: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(lambda name, params: {"type": "function", "function": {
        "name": name, "parameters": params}}, st.sampled_from(FUNCTION_NAMES), parameters)


def _tools() -> st.SearchStrategy[Change]:
    parameters = st.one_of(json_schemas(), st.just(None), st.just("object"))
    choice = st.one_of(
        st.sampled_from(["none", "auto", "required", "any", {"type": "function"},
                         {"type": "function", "function": {}}, {"type": "allowed_tools"}]),
        st.builds(lambda n: {"type": "function", "function": {"name": n}},
                  st.sampled_from(FUNCTION_NAMES)))
    tools = st.one_of(st.just([]), st.lists(_tool(parameters), min_size=1, max_size=3),
                      st.just([{"type": "function", "function": {"name": "f"}}] * 2),
                      st.just([{"type": "function", "function": {"name": f"f{i}"}}
                               for i in range(129)]),
                      st.just([{"type": "function"}]), st.just([{"type": "code_interpreter"}]))
    return st.one_of(
        st.builds(lambda t, c: {"tools": t, "tool_choice": c}, tools, choice),
        st.builds(lambda t: {"tools": t}, tools),
        st.builds(lambda c: {"tool_choice": c}, choice),  # tools that name nothing
        st.builds(lambda f, c: {"functions": f, "function_call": c},
                  st.lists(_tool(parameters).map(lambda t: t["function"]), max_size=2),
                  st.sampled_from(["none", "auto", {"name": "f"}, {"name": ""}])),
        st.sampled_from([{"parallel_tool_calls": True}, {"function_call": {"name": "f"}}]))


def _response_format() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda s: {"type": "json_schema", "json_schema": {"name": "x", "schema": s}},
                  json_schemas()),
        st.builds(lambda s: {"type": "json_schema",
                             "json_schema": {"name": "x", "schema": s, "strict": True}},
                  json_schemas()),
        st.sampled_from([{"type": "json_object"}, {"type": "json_schema"}, {"type": "text"},
                         {"type": "json_schema", "json_schema": {"name": "x"}},
                         {"type": "json_schema", "json_schema": {"name": "", "schema": {}}},
                         {"type": "grammar", "grammar": "root ::= \"a\""}, {}]))


def _logprobs() -> st.SearchStrategy[Change]:
    top = st.one_of(st.sampled_from([-1, 0, 1, 20, 21]), huge_ints())
    return st.one_of(st.builds(lambda t: {"logprobs": True, "top_logprobs": t}, top),
                     st.builds(lambda t: {"top_logprobs": t}, top),
                     st.sampled_from([{"logprobs": True}, {"logprobs": "true"}]))


def _chat_changes() -> list[st.SearchStrategy[Change]]:
    template_keys = st.sampled_from(["add_generation_prompt", "messages", "tools", "bos_token",
                                     "eos_token", "documents", "raise_exception", "\ud800"])
    template_values: st.SearchStrategy[Any] = st.one_of(
        st.booleans(), huge_ints(), hostile_text(), st.just([]), st.just({}), st.none())
    return [
        *sampling_changes(),
        field("messages", _messages()),
        field("max_completion_tokens", st.sampled_from([0, -1, 4097, 10**20, "2"])),
        _logprobs(), _tools(), field("response_format", _response_format()),
        field("chat_template_kwargs", st.dictionaries(template_keys, template_values,
                                                       min_size=1, max_size=3)),
        st.fixed_dictionaries({"add_generation_prompt": st.booleans(),
                               "continue_final_message": st.booleans()}),
        st.sampled_from([{"modalities": ["audio"]}, {"modalities": []}, {"store": True},
                         {"service_tier": "flex"}, {"audio": {"voice": "x"}},
                         {"chat_template": "{{ raise_exception('x') }}"}, {"echo": True},
                         {"metadata": {"a": "b"}}, {"reasoning_effort": "high"}]),
    ]


def chat_bodies(model: str) -> st.SearchStrategy[Json]:
    base = st.fixed_dictionaries({
        "model": st.just(model), "max_tokens": st.integers(1, 4),
        "messages": st.sampled_from(PROMPTS).map(lambda p: [{"role": "user", "content": p}]),
        "temperature": st.sampled_from([0, 0.7])})
    return with_changes(base, _chat_changes())


