"""Hostile changes to a valid request body, the fields every generating endpoint shares.

A body strategy starts from a small valid request (1-4 tokens) and merges one to three
changes into it (``with_changes``), so most bodies pass the HTTP schema and reach
planning and the engine's own checks. The values come from ``tests.e2e.hostile.strategies``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from tests.e2e.hostile.strategies import (
    any_text,
    digit_keys,
    grammars,
    hostile_floats,
    hostile_numbers,
    hostile_text,
    huge_ints,
    json_schemas,
    regexes,
    string_lists,
    token_id_lists,
)

Json = dict[str, Any]
Change = Json
EMBEDDER = "all-minilm-l6-v2"
PROMPTS = ("Say hi.", "Count to three.", "Name a colour.")
FUNCTION_NAMES = ("f", "get_weather", "", "a" * 65, "get weather", "\ud800", "f.g-h_1", "ƒ")


def field(name: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Change]:
    return values.map(lambda value: {name: value})


def fixed(*changes: Change) -> st.SearchStrategy[Change]:
    """One of these changes, as they are."""
    return st.sampled_from(changes)


def unknown_field() -> st.SearchStrategy[Change]:
    """A field nobody declares, its name hostile (it is echoed in the error)."""
    return st.builds(lambda key, value: {key: value}, hostile_text(10), huge_ints())


# ---- sampling fields every generating endpoint shares -------------------------------


def _logit_bias() -> st.SearchStrategy[Any]:
    values = st.one_of(st.floats(min_value=-100, max_value=100), hostile_numbers())
    return st.one_of(st.dictionaries(digit_keys(), values, min_size=1, max_size=4),
                     st.just({str(i): 1 for i in range(5000)}), st.just({"49151": 100}),
                     st.just({}), st.just([5]))


def stream_changes() -> st.SearchStrategy[Change]:
    options = st.fixed_dictionaries({}, optional={
        "include_usage": st.one_of(st.booleans(), st.just("yes")),
        "continuous_usage_stats": st.booleans(), "include_obfuscation": st.booleans()})
    return st.one_of(st.just({"stream": True}), st.just({"stream": "true"}),
                     st.builds(lambda o: {"stream": True, "stream_options": o}, options),
                     st.builds(lambda o: {"stream_options": o}, options))


def _structured_outputs() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(lambda r: {"regex": r}, regexes()),
        st.builds(lambda g: {"grammar": g}, grammars()),
        st.builds(lambda c: {"choice": c}, string_lists()),
        st.builds(lambda s: {"json": s}, st.one_of(json_schemas(), hostile_text(),
                                                   st.just("[]"), st.just("{\"$ref\":\"#\"}"))),
        st.builds(lambda t: {"structural_tag": t}, st.one_of(
            hostile_text(), st.just('{"type":"structural_tag","structures":[],"triggers":[]}'),
            st.just("{}"), st.just("[]"))),
        st.sampled_from([{"json_object": False}, {"json_object": True}, {},
                         {"regex": "a", "choice": ["a"]}]))


def sampling_changes() -> list[st.SearchStrategy[Change]]:
    bounded_floats = ("temperature", "top_p", "presence_penalty", "frequency_penalty",
                      "min_p", "repetition_penalty")
    flags = ("ignore_eos", "skip_special_tokens", "spaces_between_special_tokens",
             "include_stop_str_in_output")
    return [
        *(field(name, hostile_numbers()) for name in bounded_floats),
        field("seed", st.one_of(huge_ints(), hostile_floats())),
        field("n", st.one_of(st.sampled_from([0, 2, 3, 16, 17]), huge_ints())),
        st.builds(lambda n: {"n": n, "temperature": 0}, st.integers(2, 4)),  # greedy copies
        field("max_tokens", st.sampled_from([0, -1, 2048, 4097, 10**20, 2**63, "4", 1.5,
                                              float("nan"), True])),
        field("stop", st.one_of(hostile_text(), string_lists())),
        field("stop_token_ids", token_id_lists()),
        field("allowed_token_ids", token_id_lists()),
        field("bad_words", string_lists()),
        field("logit_bias", _logit_bias()),
        field("top_k", huge_ints()),
        st.builds(lambda m: {"min_tokens": m, "ignore_eos": True}, huge_ints()),
        *(field(name, st.sampled_from([True, False, "no", 1])) for name in flags),
        stream_changes(),
        field("user", any_text()),
        field("structured_outputs", _structured_outputs()),
        field("model", st.one_of(hostile_text(), st.sampled_from(["", EMBEDDER, "gpt-4o"]))),
        st.sampled_from([{"cache_salt": "x"}, {"priority": 10**20}, {"use_beam_search": True},
                         {"request_id": "\ud800"}]),
        unknown_field(),
    ]


def _apply(base: Json, changes: list[Change]) -> Json:
    body = dict(base)
    for change in changes:
        body.update(change)
    return body


def with_changes(base: st.SearchStrategy[Json],
                 changes: list[st.SearchStrategy[Change]]) -> st.SearchStrategy[Json]:
    return st.builds(_apply, base, st.lists(st.one_of(changes), min_size=1, max_size=3))
