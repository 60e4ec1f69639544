"""Text completion, Responses API and embeddings bodies (chat: ``tests.e2e.hostile.chat``)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.e2e.hostile.changes import (
    EMBEDDER,
    FUNCTION_NAMES,
    PROMPTS,
    Change,
    Json,
    field,
    fixed,
    sampling_changes,
    stream_changes,
    unknown_field,
    with_changes,
)
from tests.e2e.hostile.strategies import (
    MINILM_VOCAB,
    any_text,
    enormous_text,
    hostile_numbers,
    hostile_text,
    huge_ints,
    json_schemas,
    token_id_lists,
    token_ids,
)

# ---- text completions ------------------------------------------------------------


def _prompts() -> st.SearchStrategy[Any]:
    return st.one_of(
        any_text(), token_id_lists(), st.lists(token_id_lists(), max_size=3),
        st.lists(hostile_text(), max_size=3),
        st.sampled_from([["hi"] * 65, [[]], [""], [[1, 2], []], [["a"]], [1.5], [[0] * 3000],
                         ["hi", [1]], [[49152]]]))


def completion_bodies(model: str) -> st.SearchStrategy[Json]:
    base = st.fixed_dictionaries({
        "model": st.just(model), "max_tokens": st.integers(1, 4),
        "prompt": st.sampled_from(PROMPTS), "temperature": st.sampled_from([0, 0.7])})
    changes: list[st.SearchStrategy[Change]] = [
        *sampling_changes(), field("prompt", _prompts()),
        field("logprobs", st.one_of(st.sampled_from([-1, 0, 5, 6, True]), huge_ints())),
        field("best_of", st.one_of(st.sampled_from([0, 1, 2, 3]), huge_ints())),
        fixed({"echo": True}, {"suffix": "x"}, {"echo": False, "suffix": None})]
    return with_changes(base, changes)


# ---- Responses API ----------------------------------------------------------------


def _response_items() -> st.SearchStrategy[Any]:
    content = st.one_of(any_text(), st.lists(st.one_of(
        st.builds(lambda t: {"type": "input_text", "text": t}, hostile_text()),
        st.sampled_from([{"type": "input_image", "image_url": "http://127.0.0.1:1/x"},
                         {"type": "input_file", "file_id": "file-x"}, {"type": "output_text"},
                         {"type": "output_text", "text": "a", "annotations": [{}]}, {}])),
        max_size=3))
    item = st.one_of(
        st.builds(lambda r, c: {"type": "message", "role": r, "content": c},
                  st.sampled_from(["user", "assistant", "system", "developer", "tool"]),
                  content),
        st.builds(lambda i, n, a: {"type": "function_call", "call_id": i, "name": n,
                                   "arguments": a}, hostile_text(), hostile_text(),
                  st.sampled_from(["{}", "not json", ""])),
        st.builds(lambda i, o: {"type": "function_call_output", "call_id": i, "output": o},
                  hostile_text(), any_text()),
        st.sampled_from([{"type": "reasoning", "summary": []},
                         {"type": "item_reference", "id": "msg_x"}, {"role": "user"}, {}]))
    return st.one_of(any_text(), st.lists(item, max_size=4))


def _text_options() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda s: {"format": {"type": "json_schema", "name": "x", "schema": s}},
                  json_schemas()),
        st.sampled_from([{"format": {"type": "json_object"}}, {"format": {"type": "json_schema"}},
                         {"format": {"type": "grammar"}}, {"verbosity": "low"}, {}]))


def response_bodies(model: str) -> st.SearchStrategy[Json]:
    base = st.fixed_dictionaries({
        "model": st.just(model), "max_output_tokens": st.integers(1, 4),
        "input": st.sampled_from(PROMPTS), "temperature": st.sampled_from([0, 0.7])})
    parameters = st.one_of(json_schemas(), st.none())
    tools = st.lists(st.builds(lambda n, p: {"type": "function", "name": n, "parameters": p},
                               st.sampled_from(FUNCTION_NAMES), parameters), max_size=2)
    choice = st.one_of(st.sampled_from(["none", "auto", "required", {"type": "function"}]),
                       st.builds(lambda n: {"type": "function", "name": n},
                                 st.sampled_from(FUNCTION_NAMES)))
    changes: list[st.SearchStrategy[Change]] = [
        field("input", _response_items()), field("instructions", any_text()),
        field("text", _text_options()),
        st.builds(lambda t, c: {"tools": t, "tool_choice": c}, tools, choice),
        field("tool_choice", choice),
        field("previous_response_id", st.one_of(hostile_text(), st.just("resp_" + "0" * 40))),
        field("metadata", st.one_of(st.dictionaries(hostile_text(), hostile_text(), max_size=3),
                                     st.just({f"k{i}": "v" * 600 for i in range(20)}))),
        field("max_output_tokens", st.sampled_from([0, -1, 4097, 10**20])),
        *(field(name, hostile_numbers())
          for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty")),
        field("seed", huge_ints()), stream_changes(), field("user", any_text()),
        fixed({"store": False}, {"truncation": "auto"}, {"reasoning": {}}, {"include": ["x"]},
              {"background": True}, {"top_logprobs": 5}, {"max_tool_calls": 1},
              {"service_tier": "flex"}, {"parallel_tool_calls": False}, {"prompt": {"id": "p"}}),
        field("model", st.one_of(hostile_text(), st.just(EMBEDDER))), unknown_field()]
    return with_changes(base, changes)


# ---- embeddings -----------------------------------------------------------------


def _embedding_inputs() -> st.SearchStrategy[Any]:
    return st.one_of(
        any_text(), token_id_lists(MINILM_VOCAB),
        st.lists(token_id_lists(MINILM_VOCAB), max_size=3), st.lists(hostile_text(), max_size=4),
        st.lists(token_ids(MINILM_VOCAB), min_size=1, max_size=4).map(lambda ids: [ids]),
        enormous_text().map(lambda t: [t]),
        st.sampled_from([["a"] * 2049, [""], ["a", ""], [[]], [["a"]], [1.5], ["hi", [1]]]))


def embedding_bodies(model: str = EMBEDDER) -> st.SearchStrategy[Json]:
    base = st.fixed_dictionaries({"model": st.just(model),
                                  "input": st.sampled_from(PROMPTS)})
    changes: list[st.SearchStrategy[Change]] = [
        field("input", _embedding_inputs()),
        field("dimensions", st.one_of(st.sampled_from([0, 1, 383, 384, 385]), huge_ints())),
        field("encoding_format", st.one_of(st.sampled_from(["float", "base64", "", "FLOAT"]),
                                            hostile_text())),
        field("model", st.one_of(hostile_text(), st.just("smollm2-135m-instruct"))),
        field("user", any_text()), unknown_field()]
    return with_changes(base, changes)
