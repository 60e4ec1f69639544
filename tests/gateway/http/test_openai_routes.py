"""The /v1 routes around a fake engine: shapes, usage, SSE framing, errors."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from engine.fake import FakeEngine
from gateway.app import create_app
from tests.conftest import ADMIN_KEY, MODEL, fake_state, make_settings

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Capital of France?"}]}


def sse_payloads(body: str) -> list[str]:
    """The data fields of an SSE body, checking every event is framed as 'data: ...\\n\\n'."""
    events = [e for e in body.split("\n\n") if e.strip()]
    payloads = []
    for event in events:
        lines = event.split("\n")
        assert all(line.startswith("data: ") or line.startswith(":") for line in lines), event
        payloads.extend(line[len("data: ") :] for line in lines if line.startswith("data: "))
    return payloads


def assert_envelope(
    response: httpx.Response, status: int, param: str | None = None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    assert response.headers["x-request-id"]
    return dict(error)


async def test_chat_when_not_streamed_then_returns_text_and_exact_usage(
    fake_client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    response = await fake_client.post("/v1/chat/completions", json={**CHAT, "temperature": 0})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": fake_engine.reply,
        "refusal": None,
    }
    assert body["choices"][0]["finish_reason"] == "stop"
    prompt = "user: Capital of France?\nassistant: "
    assert body["usage"]["prompt_tokens"] == len(prompt)
    assert body["usage"]["completion_tokens"] == len(fake_engine.reply)
    assert body["usage"]["total_tokens"] == len(prompt) + len(fake_engine.reply)
    assert body["id"] == "chatcmpl-" + response.headers["x-request-id"]


async def test_chat_when_streamed_with_include_usage_then_chunks_end_with_usage_and_done(
    fake_client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    response = await fake_client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == fake_engine.reply
    usage_chunk = chunks[-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == len(fake_engine.reply)
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] == "stop"


@pytest.mark.parametrize("options", [None, {"include_usage": False}])
async def test_stream_when_usage_not_asked_then_every_chunk_has_a_choice_and_no_usage(
    fake_client: httpx.AsyncClient, options: dict[str, bool] | None
) -> None:
    """OpenAI's documented loop reads ``chunk.choices[0]`` on every chunk."""
    body = {**CHAT, "stream": True, **({"stream_options": options} if options else {})}
    payloads = sse_payloads((await fake_client.post("/v1/chat/completions", json=body)).text)
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert chunks and all(c["choices"] and "usage" not in c for c in chunks)
    assert payloads[-1] == "[DONE]"


async def test_stream_when_continuous_usage_then_every_chunk_counts_so_far(
    fake_client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    options = {"include_usage": True, "continuous_usage_stats": True}
    body = {**CHAT, "stream": True, "stream_options": options}
    payloads = sse_payloads((await fake_client.post("/v1/chat/completions", json=body)).text)
    chunks = [json.loads(p) for p in payloads[:-1]]
    content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    counts = [c["usage"]["completion_tokens"] for c in content]
    assert counts == sorted(counts) and counts[-1] == len(fake_engine.reply)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == counts[-1]


async def test_stream_when_text_contains_newlines_and_data_lines_then_framing_holds(
    fake_client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.reply = "a\n\ndata: [DONE]\r\n\nevent: x\nb"
    payloads = sse_payloads(
        (await fake_client.post("/v1/chat/completions", json={**CHAT, "stream": True})).text
    )
    assert payloads.count("[DONE]") == 1 and payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == fake_engine.reply


async def test_chat_when_n_is_two_then_both_choices_stream_and_usage_counts_both(
    fake_client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    body = {**CHAT, "n": 2, "stream": True, "temperature": 0.7,
            "stream_options": {"include_usage": True}}
    payloads = sse_payloads((await fake_client.post("/v1/chat/completions", json=body)).text)
    chunks = [json.loads(p) for p in payloads[:-1]]
    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk["choices"]:
            texts[choice["index"]] += choice["delta"].get("content", "")
    assert texts == {0: fake_engine.reply, 1: fake_engine.reply}
    assert chunks[-1]["usage"]["completion_tokens"] == 2 * len(fake_engine.reply)


async def test_chat_when_n_above_one_and_greedy_then_n_identical_choices(
    fake_client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    """OpenAI accepts n > 1 at temperature 0 (the choices are the same greedy answer)."""
    response = await fake_client.post(
        "/v1/chat/completions", json={**CHAT, "n": 3, "temperature": 0}
    )
    body = response.json()
    assert [c["message"]["content"] for c in body["choices"]] == [fake_engine.reply] * 3
    assert body["usage"]["completion_tokens"] == 3 * len(fake_engine.reply)


async def test_chat_when_max_tokens_reached_then_finish_reason_length(
    fake_client: httpx.AsyncClient,
) -> None:
    response = await fake_client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 5})
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 5


async def test_chat_when_stop_string_matches_then_text_stops_before_it(
    fake_client: httpx.AsyncClient,
) -> None:
    response = await fake_client.post("/v1/chat/completions", json={**CHAT, "stop": ["Paris"]})
    content = response.json()["choices"][0]["message"]["content"]
    assert "Paris" not in content and content.startswith("The capital")


async def test_chat_when_logprobs_requested_then_each_token_has_top_alternatives(
    fake_client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    body = {**CHAT, "logprobs": True, "top_logprobs": 2}
    logprobs = (await fake_client.post("/v1/chat/completions", json=body)).json()["choices"][0][
        "logprobs"
    ]["content"]
    assert len(logprobs) == len(fake_engine.reply)
    assert all(len(item["top_logprobs"]) == 2 and item["bytes"] for item in logprobs)


async def test_completion_when_prompt_is_text_then_text_completion_shape(
    fake_client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    body = {"model": MODEL, "prompt": "Hello", "max_tokens": 50, "logprobs": 1}
    response = await fake_client.post("/v1/completions", json=body)
    data = response.json()
    assert data["object"] == "text_completion"
    assert data["choices"][0]["text"] == fake_engine.reply
    assert data["usage"]["prompt_tokens"] == 5
    assert len(data["choices"][0]["logprobs"]["tokens"]) == len(fake_engine.reply)


async def test_completion_when_default_max_tokens_then_sixteen(
    fake_client: httpx.AsyncClient,
) -> None:
    data = (await fake_client.post("/v1/completions", json={"model": MODEL, "prompt": "Hi"})).json()
    assert data["usage"]["completion_tokens"] == 16
    assert data["choices"][0]["finish_reason"] == "length"


async def test_models_when_listed_then_served_model_appears(fake_client: httpx.AsyncClient) -> None:
    data = (await fake_client.get("/v1/models")).json()
    assert [m["id"] for m in data["data"]] == [MODEL]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL}, "messages"),
        ({**CHAT, "messages": []}, "messages"),
        ({**CHAT, "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
        ({**CHAT, "temperature": 3}, "temperature"),
        ({**CHAT, "top_p": 0}, "top_p"),
        ({**CHAT, "n": 0}, "n"),
        ({**CHAT, "n": 10_000}, "n"),
        ({**CHAT, "max_tokens": -1}, "max_tokens"),
        ({**CHAT, "max_tokens": 10**9}, "max_tokens"),
        ({**CHAT, "top_logprobs": 50, "logprobs": True}, "top_logprobs"),
        ({**CHAT, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({**CHAT, "tools": [{"type": "function"}]}, "tools.0.function"),
        ({**CHAT, "response_format": {"type": "xml"}}, "response_format"),
        ({**CHAT, "stream_options": {"include_usage": True}}, "stream_options"),
        ({**CHAT, "reasoning_effort": "high"}, "reasoning_effort"),
        ({**CHAT, "store": True}, "store"),
        ({**CHAT, "metadata": {str(i): "v" for i in range(17)}}, "metadata"),
        ({**CHAT, "service_tier": "flex"}, "service_tier"),
        ({**CHAT, "cache_salt": "guess"}, "cache_salt"),
        ({**CHAT, "logit_bias": {"x": 5}}, "logit_bias"),
        ({**CHAT, "logit_bias": {"65": 500}}, "logit_bias"),
        ({**CHAT, "frobnicate": 1}, "frobnicate"),
        ({**CHAT, "presence_penalty": 9}, "presence_penalty"),
        ({**CHAT, "messages": "hello"}, "messages"),
    ],
)
async def test_chat_when_body_is_wrong_then_400_envelope_names_param(
    fake_client: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    assert_envelope(await fake_client.post("/v1/chat/completions", json=body), 400, param)


async def test_chat_when_json_is_malformed_then_400(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.post(
        "/v1/chat/completions",
        content=b'{"model": "x", ',
        headers={"content-type": "application/json"},
    )
    assert_envelope(response, 400)


async def test_chat_when_body_is_invalid_utf8_then_400(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.post(
        "/v1/chat/completions",
        content=b'{"model": "\xff\xfe"}',
        headers={"content-type": "application/json"},
    )
    assert_envelope(response, 400)


async def test_chat_when_model_unknown_then_404(fake_client: httpx.AsyncClient) -> None:
    error = assert_envelope(
        await fake_client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"}),
        404,
        "model",
    )
    assert error["code"] == "model_not_found"


async def test_chat_when_prompt_exceeds_context_then_400_names_limits(
    fake_client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    long = {"role": "user", "content": "x" * (fake_engine.max_model_len + 10)}
    error = assert_envelope(
        await fake_client.post("/v1/chat/completions", json={**CHAT, "messages": [long]}), 400
    )
    assert error["code"] == "context_length_exceeded"
    assert str(fake_engine.max_model_len) in error["message"]


async def test_request_when_body_too_large_then_413(fake_client: httpx.AsyncClient) -> None:
    huge = {**CHAT, "messages": [{"role": "user", "content": "x" * 2_000_000}]}
    assert_envelope(await fake_client.post("/v1/chat/completions", json=huge), 413)


async def test_request_when_json_deeply_nested_then_400(fake_client: httpx.AsyncClient) -> None:
    nested = "[" * 5000 + "]" * 5000
    response = await fake_client.post(
        "/v1/chat/completions",
        content=f'{{"model": "{MODEL}", "messages": {nested}}}'.encode(),
        headers={"content-type": "application/json"},
    )
    assert_envelope(response, 400)


async def test_request_when_auth_on_and_no_key_then_401(fake_client: httpx.AsyncClient) -> None:
    response = await fake_client.post(
        "/v1/chat/completions", json=CHAT, headers={"authorization": ""}
    )
    assert_envelope(response, 401)
    wrong = await fake_client.get("/v1/models", headers={"authorization": "Bearer nope"})
    assert_envelope(wrong, 401)


async def test_request_when_auth_off_then_no_key_needed(fake_engine: FakeEngine) -> None:
    settings = make_settings()
    settings = settings.model_copy(
        update={"auth": settings.auth.model_copy(update={"enabled": False})}
    )
    app = create_app(fake_state(fake_engine, settings), manage_engines=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://g") as c:
        assert (await c.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_unknown_route_when_requested_then_404_envelope(
    fake_client: httpx.AsyncClient,
) -> None:
    assert_envelope(await fake_client.get("/v1/nothing-here"), 404)


async def test_chat_when_engine_not_ready_then_503_with_retry_after(
    fake_client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.ready = False
    response = await fake_client.post("/v1/chat/completions", json=CHAT)
    assert_envelope(response, 503)
    assert int(response.headers["retry-after"]) >= 1
    assert (await fake_client.get("/ready")).status_code == 503
    assert (await fake_client.get("/health")).status_code == 200


async def test_stream_when_engine_fails_midway_then_error_event_and_done(
    fake_client: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    fake_engine.fail_after_tokens = 3
    payloads = sse_payloads(
        (await fake_client.post("/v1/chat/completions", json={**CHAT, "stream": True})).text
    )
    assert payloads[-1] == "[DONE]"
    assert json.loads(payloads[-2])["error"]["type"] == "service_unavailable"


async def test_server_when_many_bad_requests_then_keeps_serving(
    fake_client: httpx.AsyncClient,
) -> None:
    for _ in range(20):
        await fake_client.post(
            "/v1/chat/completions",
            content=b"not json",
            headers={"content-type": "application/json"},
        )
    assert (await fake_client.post("/v1/chat/completions", json=CHAT)).status_code == 200


def test_admin_key_in_tests_is_the_profile_key() -> None:
    secret = make_settings().auth.admin_key
    assert secret is not None and secret.get_secret_value() == ADMIN_KEY


async def test_chat_when_engine_stalls_then_503_and_engine_request_aborted(
    fake_engine: FakeEngine,
) -> None:
    settings = make_settings()
    limits = settings.limits.model_copy(update={"stall_timeout_s": 0.05})
    settings = settings.model_copy(update={"limits": limits})
    fake_engine.token_delay_s = 1.0
    app = create_app(fake_state(fake_engine, settings), manage_engines=False)
    headers = {"authorization": f"Bearer {ADMIN_KEY}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://g", headers=headers) as c:
        response = await c.post("/v1/chat/completions", json=CHAT)
    assert_envelope(response, 503)
    assert fake_engine.stats().running == 0
    # the stall was the engine's request aborted, not only a stream closed (the fake clears
    # its running set on close either way)
    request_id = response.headers["x-request-id"]
    assert fake_engine.aborted and all(a.startswith(request_id) for a in fake_engine.aborted)
