"""Issue #30's hostile inputs against the real engine (vLLM CPU, SmolLM2, the shared session
gateway): each is a 400 in the OpenAI envelope naming the field, never a 500, and the
engine still answers a plain request afterwards.

The fast tests (tests/gateway/...) check each bound around a fake engine; this module
proves that what used to reach vLLM (a seed past 64 bits, ids past the vocabulary, a
regex its grammar backend refuses) is refused before it can fail there, or mapped to a 400
when vLLM itself refuses it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import LiveGateway

pytestmark = [pytest.mark.engine]
VOCAB = 49_152  # SmolLM2's vocabulary
ASK = [{"role": "user", "content": "Say hi."}]


def nested_schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


def big_schema(size: int) -> dict[str, Any]:
    return {"type": "object", "properties": {
        f"p{i}": {"type": "string", "description": "x" * 90} for i in range(size // 128)}}


def json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


def post(gateway: LiveGateway, route: str, body: dict[str, Any] | str) -> httpx.Response:
    content = body if isinstance(body, str) else json.dumps(body)
    return httpx.post(f"{gateway.v1}{route}", content=content, timeout=120,
                      headers={**gateway.admin_headers(), "content-type": "application/json"})


def chat(gateway: LiveGateway, **fields: Any) -> dict[str, Any]:
    return {"model": gateway.model, "messages": ASK, "max_tokens": 4, **fields}


def assert_refused(response: httpx.Response, param: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert response.headers["x-request-id"]
    for internal in ("Traceback", ".cc:", ".py", "127.0.0.1"):
        assert internal not in error["message"], error


CHAT_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("unicode digit logit_bias key", {"logit_bias": {"²": 5}}, "logit_bias"),
    ("logit_bias id past the vocabulary", {"logit_bias": {str(VOCAB): 5}}, "logit_bias"),
    ("seed past int64", {"seed": 99999999999999999999999}, "seed"),
    ("negative seed past int64", {"seed": -99999999999999999999}, "seed"),
    ("400-deep schema", {"response_format": json_schema(nested_schema(400))},
     "response_format"),
    ("400 KB schema", {"response_format": json_schema(big_schema(400_000))},
     "response_format.json_schema.schema"),
    ("$ref cycle", {"response_format": json_schema(
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
         "$ref": "#/$defs/a"})}, "response_format.json_schema.schema"),
    ("allowed id past the vocabulary", {"allowed_token_ids": [1, VOCAB]},
     "allowed_token_ids"),
    ("stop id past the vocabulary", {"stop_token_ids": [VOCAB + 7]}, "stop_token_ids"),
    ("regex the grammar backend refuses", {"structured_outputs": {"regex": "(?<=a)b"}},
     "structured_outputs.regex"),
    ("grammar the grammar backend refuses", {"structured_outputs": {
        "grammar": "root ::= undefined_rule"}}, "structured_outputs.grammar"),
    ("top_logprobs past vLLM's 20", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
]


@pytest.mark.parametrize(("fields", "param"), [(f, p) for _, f, p in CHAT_CASES],
                         ids=[name for name, _, _ in CHAT_CASES])
def test_chat_when_hostile_then_400_naming_the_field(
    live_gateway: LiveGateway, fields: dict[str, Any], param: str
) -> None:
    assert_refused(post(live_gateway, "/chat/completions", chat(live_gateway, **fields)),
                   param)


@pytest.mark.parametrize(("raw", "param"), [
    ('"temperature": NaN', "temperature"),
    ('"logit_bias": {"1": Infinity}', "logit_bias"),
    ('"stop": "\\ud800"', "stop"),  # half a surrogate pair: was a 500 in vLLM's msgpack
    ('"x": ' + "[" * 5000 + "]" * 5000, "x"),  # past Python's recursion limit
], ids=["NaN", "Infinity", "lone surrogate", "5000-deep JSON"])
def test_chat_when_the_json_itself_is_hostile_then_400_naming_the_field(
    live_gateway: LiveGateway, raw: str, param: str
) -> None:
    body = json.dumps(chat(live_gateway))[:-1] + ", " + raw + "}"
    assert_refused(post(live_gateway, "/chat/completions", body), param)


def test_completion_when_prompt_ids_are_past_the_vocabulary_then_400(
    live_gateway: LiveGateway
) -> None:
    body = {"model": live_gateway.model, "prompt": [1, VOCAB], "max_tokens": 2}
    assert_refused(post(live_gateway, "/completions", body), "prompt")
    body = {"model": live_gateway.model, "prompt": "hi", "max_tokens": 2, "seed": 2**64}
    assert_refused(post(live_gateway, "/completions", body), "seed")


def test_top_k_past_the_vocabulary_when_sent_then_answered_as_vllm_means_it(
    live_gateway: LiveGateway
) -> None:
    """Was a 500 (an int64 overflow in vLLM's transport); vLLM reads any k >= the
    vocabulary as off, and so does the gateway now."""
    response = post(live_gateway, "/chat/completions",
                    chat(live_gateway, top_k=99999999999999999999, temperature=0))
    assert response.status_code == 200, response.text


def test_engine_when_every_hostile_input_was_refused_then_still_answers(
    live_gateway: LiveGateway
) -> None:
    for _, fields, _ in CHAT_CASES:
        post(live_gateway, "/chat/completions", chat(live_gateway, **fields))
    response = post(live_gateway, "/chat/completions", chat(live_gateway, temperature=0))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["choices"][0]["message"]["content"]
    assert answer["usage"]["completion_tokens"] >= 1
