"""Hypothesis strategies for the values that break request validation: one per kind of
field, each aimed at its hard cases rather than at random members of its OpenAPI type.

Values may hold what ``json.dumps`` writes as raw JSON text only: non-finite floats
(``NaN``, ``Infinity``) and lone surrogates (``"\\ud800"`` escapes). ``probe.encode``
sends bodies that way, so these reach the gateway's own parser.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

SMOLLM2_VOCAB = 49_152  # token ids are 0..49151
MINILM_VOCAB = 30_522  # the embedder's (BERT's) vocabulary

# Characters str.isdigit() says yes to but int() refuses, or reads as another number.
# (superscripts, Arabic-Indic, fullwidth, NKo, Bengali, Thai, mathematical, circled, Roman,
# fractions, ideographic zero; the last is 49152 in Arabic-Indic digits)
UNICODE_DIGITS = ("\u00b2", "\u00b3", "\u00b9\u00b2", "\u0663", "\u0661\u0660", "\u06f4",
                  "\uff11", "\uff19\uff19", "\u07c1", "\u09e9", "\u0e53", "\U0001d7d9",
                  "\U0001d7d7", "\u2075", "\u2087", "\u2460", "\u216b", "\u00bd", "\u3007",
                  "\u0664\u0669\u0661\u0665\u0662")
NUMBER_LOOKALIKES = ("-1", "+5", " 5", "5 ", "05", "1_000", "0x1f", "1e3", "1.0", "", "\u221e",
                     "NaN", "49151", "49152", "4294967296", "99999999999999999999999")
EDGE_INTS = (0, -1, 1, 2, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64,
             10**23, 99999999999999999999999, -(2**31), -(2**63) - 1, -(10**23), 10**400)
NON_FINITE = (float("nan"), float("inf"), float("-inf"))
EDGE_FLOATS = (-0.0, 5e-324, 1e-300, 1e308, -1e308, 2.0000000001, -2.0000000001,
               100.00000001, -100.00000001, 1.0000001, 0.9999999)
LONE_SURROGATES = ("\ud800", "\udfff", "a\ud83d", "\udc00b", "\ud800\ud800")
CONTROLS = ("\x00", "\x01", "\x07", "\x08", "\x1b[2J", "\x7f", "\x85", "\u2028", "\u2029",
            "\ufeff", "\u202e", "\u200b", "\ufffe", "\uffff", "\U0010ffff", "\r\n", "\t")
SPECIAL_TOKENS = ("<|im_end|>", "<|im_start|>system\n", "<|endoftext|>", "<tool_call>",
                  "</tool_call>", "{{ raise_exception('x') }}", "{% for %}", "[INST]")


def huge_ints() -> st.SearchStrategy[int]:
    """Integers at and past every width a parser or tensor might hold them in."""
    return st.one_of(st.sampled_from(EDGE_INTS),
                     st.integers(min_value=-(10**30), max_value=10**30))


def hostile_floats() -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from(NON_FINITE + EDGE_FLOATS),
                     st.floats(allow_nan=True, allow_infinity=True))


def hostile_numbers() -> st.SearchStrategy[Any]:
    """What a numeric field may be sent: floats, huge ints, and the wrong types."""
    wrong: st.SearchStrategy[Any] = st.sampled_from(["0.5", "", True, False, [], {}, [1]])
    return st.one_of(hostile_floats(), huge_ints(), wrong)


def digit_keys() -> st.SearchStrategy[str]:
    """Map keys meant to be token ids: Unicode digits, look-alikes, ids past the vocab."""
    return st.one_of(
        st.sampled_from(UNICODE_DIGITS + NUMBER_LOOKALIKES),
        st.text(st.characters(categories=("Nd", "No", "Nl")), min_size=1, max_size=4),
        huge_ints().map(str),
        st.integers(min_value=SMOLLM2_VOCAB - 2, max_value=SMOLLM2_VOCAB + 2).map(str))


def token_ids(vocab: int = SMOLLM2_VOCAB) -> st.SearchStrategy[int]:
    """Ids on both sides of the vocabulary's end, negative and huge ones."""
    return st.one_of(st.sampled_from((vocab - 1, vocab, vocab + 1, -1, 0)), huge_ints(),
                     st.integers(min_value=0, max_value=vocab - 1))


def token_id_lists(vocab: int = SMOLLM2_VOCAB) -> st.SearchStrategy[list[int]]:
    return st.one_of(st.just([]), st.lists(token_ids(vocab), min_size=1, max_size=6),
                     st.sampled_from([[0] * 5000, list(range(vocab - 3, vocab + 3)),
                                      [vocab - 1] * 300]))


def hostile_text(max_size: int = 24) -> st.SearchStrategy[str]:
    """Strings with lone surrogates, control and format characters, special tokens."""
    odd = st.characters(categories=("Cs", "Cc", "Cf", "Co", "Zl", "Zp", "Mn"))
    return st.one_of(
        st.sampled_from(LONE_SURROGATES + CONTROLS + SPECIAL_TOKENS),
        st.text(odd, min_size=1, max_size=max_size),
        st.text(min_size=0, max_size=max_size),
        st.lists(st.sampled_from(LONE_SURROGATES + CONTROLS + SPECIAL_TOKENS + ("a", " ")),
                 min_size=1, max_size=8).map("".join))


def enormous_text() -> st.SearchStrategy[str]:
    """Long strings (kept under the 1 MiB body limit, past the model's context)."""
    return st.sampled_from(("a" * 20_000, "word " * 30_000, "\ud800" * 2_000,
                            "€" * 100_000, "<|im_end|>" * 3_000))


def any_text() -> st.SearchStrategy[str]:
    return st.one_of(hostile_text(), enormous_text())


def string_lists(max_size: int = 6) -> st.SearchStrategy[list[str]]:
    """Empty and enormous lists of strings, empty and hostile items."""
    return st.one_of(
        st.just([]), st.just([""]),
        st.lists(hostile_text(8), min_size=1, max_size=max_size),
        st.sampled_from([["stop"] * 5, [f"s{i}" for i in range(10_000)],
                         ["x" * 257], ["a", "a", "a", "a"], ["\ud800"]]))


# ---- regular expressions and grammars --------------------------------------------

REGEXES = (
    "(a+)+$", "(a|aa)+b", "(.*a){25}", "^(([a-z])+.)+[A-Z]([a-z])+$", "(x+x+)+y",
    "(?<=a)b", "(?<!a)b", "(a)\\1", "(?P<x>a)(?P=x)", "(?=a)a", "(?!a)b", "(?>a+)b", "a++",
    "[", "(", ")", "a{2,1}", "a{100000}", "a{0,65536}", ".{1000000}", "\\p{L}+", "[[:alpha:]]",
    "(?i)abc", "^$", "", "\\", "a**", "[z-a]", "\\u", "\\x{110000}", "[^\\x00-\\U0010ffff]",
    "\\b\\B", "(" * 600 + "a" + ")" * 600, "(a|" * 300 + "b" + ")" * 300, "\ud800", "\x00",
    "[\\s\\S]*", ".*" * 200, "(?#comment)a", "\\Z", "\\G", "(?(1)a|b)", "\\k<x>",
)
GRAMMARS = (
    "root ::= root", "root ::= ", "", "root ::= \"a\" | ", "start: start", "root ::= [",
    "root ::= \"a\"*" * 2, "root ::= x\nx ::= x x", "root ::= \"\\ud800\"", "???",
    "root ::= [^]", "root ::= \"a\"{1000000}", "%ignore", "start: /(a+)+$/",
)


def regexes() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(REGEXES), hostile_text(12))


def grammars() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(GRAMMARS), hostile_text(16))


# ---- JSON schemas ---------------------------------------------------------------


def nested_schema(depth: int, kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        if kind == "object":
            schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
        elif kind == "array":
            schema = {"type": "array", "items": schema, "minItems": 1}
        else:
            schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


REF_CYCLES: tuple[dict[str, Any], ...] = (
    {"$ref": "#"},
    {"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    {"type": "object", "properties": {"next": {"$ref": "#"}}, "required": ["next"]},
    {"definitions": {"n": {"type": "array", "items": {"$ref": "#/definitions/n"},
                           "minItems": 1}}, "$ref": "#/definitions/n"},
    {"$ref": "#/$defs/missing"},
    {"$ref": "http://169.254.169.254/latest/meta-data"},
    {"$ref": "file:///etc/passwd"},
    {"$ref": "#/properties/a", "properties": {"a": {"$ref": "#/properties/a"}}},
    {"allOf": [{"$ref": "#"}], "type": "object"},
)
ODD_SCHEMAS: tuple[dict[str, Any], ...] = (
    {"type": "string", "minLength": 5, "maxLength": 1}, {"enum": []}, {"not": {}},
    {"allOf": [{"type": "string"}, {"type": "integer"}]},
    {"type": "array", "minItems": 10**9}, {"type": "string", "minLength": 10**9},
    {"type": "array", "items": {"type": "string", "minLength": 5000}, "minItems": 1000},
    {"type": "integer", "minimum": 1e308}, {"type": "number", "multipleOf": 1e-300},
    {"type": "integer", "minimum": 10**30, "maximum": 10**31},
    {"type": "number", "maximum": float("inf")}, {"const": float("nan")},
    {"enum": [float("nan"), float("inf")]}, {"type": 5}, {"type": "strin"},
    {"type": ["string", "null", "object"]}, {"properties": []}, {"required": "a"},
    {"type": "string", "pattern": "(a+)+$"}, {"type": "string", "pattern": "(?<=a)b"},
    {"type": "string", "pattern": "(a)\\1"}, {"type": "string", "pattern": "["},
    {"type": "string", "format": "email"}, {"type": "string", "format": "no-such-format"},
    {"type": "object", "patternProperties": {"^\ud800": {"type": "integer"}}},
    {"if": {"type": "string"}, "then": {"minLength": 3}, "else": {"type": "null"}},
    {"type": "object", "properties": {"\ud800": {"type": "string"}}, "required": ["\ud800"]},
    {"type": "object", "required": ["missing"], "additionalProperties": False},
    {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(2000)}},
    {"type": "array", "prefixItems": [{"type": "integer"}] * 500, "items": False},
    {"$schema": "http://json-schema.org/draft-03/schema#", "type": "any"},
    {"dependentSchemas": {"a": {"$ref": "#"}}}, {}, {"type": "null"},
    {"type": "object", "unevaluatedProperties": {"$ref": "#"}},
)


def json_schemas() -> st.SearchStrategy[dict[str, Any]]:
    """Deep, recursive (``$ref`` cycles), unsatisfiable, enormous and malformed schemas."""
    # 440 levels of objects nest about 900 deep in JSON: the deepest the gateway's JSON
    # parser reads (the raw-body tests go past it); json_schema's checks must cope.
    deep = st.builds(nested_schema, st.sampled_from((40, 150, 400, 440)),
                     st.sampled_from(("object", "array", "anyOf")))
    keyword = st.sampled_from(("type", "minItems", "maxLength", "pattern", "enum", "$ref",
                               "minimum", "format", "const", "items", "required"))
    leaf: st.SearchStrategy[Any] = st.one_of(
        st.sampled_from(("string", "integer", "object", "array", "#", "(a+)+$")),
        huge_ints(), hostile_floats(), st.just([]), st.just({}))
    random_schema = st.recursive(
        st.dictionaries(keyword, leaf, max_size=3),
        lambda inner: st.one_of(
            st.builds(lambda p: {"type": "object", "properties": p},
                      st.dictionaries(hostile_text(6), inner, max_size=3)),
            st.builds(lambda items: {"type": "array", "items": items}, inner),
            st.builds(lambda schemas: {"anyOf": schemas}, st.lists(inner, max_size=3))),
        max_leaves=12)
    return st.one_of(st.sampled_from(REF_CYCLES + ODD_SCHEMAS), deep, random_schema)
