"""A reasoning model on the fake engine: vLLM's olmo3 parser (``<think>`` as text) splits the
span into ``reasoning_content`` / a ``reasoning`` item, whole and streamed, the same way;
its tokens are counted from the engine's ids, reported and kept in the ledger;
``reasoning_effort`` sets the model's template switch, or is a 400 naming it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from engine.fake import CharRenderer, FakeEngine
from gateway.app import create_app
from gateway.bootstrap import build_state
from gateway.serving.reasoning import Reasoner, Split
from gateway.serving.registry import ModelRegistry, ServedModel
from tests.conftest import MODEL, make_settings
from tests.gateway.metered import bearer, create_key, metered_settings, metering_of

REPLY = "<think>Paris is in France.</think>Paris."
SPAN_TOKENS = len("<think>Paris is in France.</think>")  # one token per character
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Capital of France?"}],
        "temperature": 0}
ADMIN = {"authorization": "Bearer test-admin-key-0123456789"}


class CharTokenizer:
    """The fake engine's tokens (one per character) as a tokenizer vLLM's parsers read."""

    def get_vocab(self) -> dict[str, int]:
        return {"</": 0x110001, "Ġ</": 0x110002, "think": 0x110003, ">": ord(">")}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        del skip_special_tokens
        return "".join(chr(i) for i in ids)


class RecordingRenderer(CharRenderer):
    def __init__(self) -> None:
        self.prompts: list[Any] = []

    def render_chat(self, prompt: Any) -> list[int]:
        self.prompts.append(prompt)
        return super().render_chat(prompt)


def reasoning_registry(engine: FakeEngine, renderer: CharRenderer | None = None,
                       switch: str | None = "enable_thinking") -> ModelRegistry:
    return ModelRegistry([ServedModel(MODEL, engine, renderer or CharRenderer(),
                                      reasoning=Reasoner("olmo3", CharTokenizer()),
                                      reasoning_switch=switch)])


def client_of(registry: ModelRegistry) -> httpx.AsyncClient:
    app = create_app(build_state(make_settings(), registry), manage_engines=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw")


def events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: {")]


async def test_chat_when_model_reasons_then_span_split_counted_whole_and_streamed() -> None:
    async with client_of(reasoning_registry(FakeEngine(MODEL, reply=REPLY))) as client:
        whole = (await client.post("/v1/chat/completions", json=CHAT, headers=ADMIN)).json()
        streamed = await client.post("/v1/chat/completions", headers=ADMIN, json={
            **CHAT, "stream": True, "stream_options": {"include_usage": True}})
    message = whole["choices"][0]["message"]
    assert (message["reasoning_content"], message["reasoning"], message["content"]) == (
        "Paris is in France.", "Paris is in France.", "Paris.")
    assert whole["usage"]["completion_tokens"] == len(REPLY)
    assert whole["usage"]["completion_tokens_details"] == {"reasoning_tokens": SPAN_TOKENS}
    chunks = events(streamed.text)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "Paris is in France."
    assert "".join(d.get("reasoning") or "" for d in deltas) == "Paris is in France."
    assert "".join(d.get("content") or "" for d in deltas) == "Paris."
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": SPAN_TOKENS}


async def test_responses_when_model_reasons_then_reasoning_item_whole_and_streamed() -> None:
    body = {"model": MODEL, "input": "Capital of France?", "store": False}
    async with client_of(reasoning_registry(FakeEngine(MODEL, reply=REPLY))) as client:
        whole = (await client.post("/v1/responses", json=body, headers=ADMIN)).json()
        streamed = await client.post("/v1/responses", json={**body, "stream": True},
                                     headers=ADMIN)
    reasoning, message = whole["output"]
    assert reasoning["type"] == "reasoning"
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "Paris is in France."}]
    assert message["content"][0]["text"] == "Paris."
    assert whole["usage"]["output_tokens_details"] == {"reasoning_tokens": SPAN_TOKENS}
    found = events(streamed.text)
    kinds = [e["type"] for e in found]
    assert kinds.index("response.reasoning_text.done") < kinds.index("response.output_text.delta")
    assert "".join(e["delta"] for e in found if e["type"] == "response.reasoning_text.delta") \
        == "Paris is in France."
    reasoning_events = [e["type"] for e in found if e.get("output_index") == 0
                        and e["type"] != "response.reasoning_text.delta"]
    assert reasoning_events == [  # as OpenAI streams a reasoning item (its SDKs rely on it)
        "response.output_item.added", "response.content_part.added",
        "response.reasoning_text.done", "response.content_part.done",
        "response.output_item.done"]
    part_added = next(e for e in found if e["type"] == "response.content_part.added")
    assert part_added["part"] == {"type": "reasoning_text", "text": ""}
    completed = found[-1]["response"]
    assert [i["type"] for i in completed["output"]] == ["reasoning", "message"]
    assert completed["output"][0]["content"] == reasoning["content"]


async def test_reasoning_effort_when_model_has_a_switch_then_template_gets_it() -> None:
    renderer = RecordingRenderer()
    async with client_of(reasoning_registry(FakeEngine(MODEL, reply=REPLY), renderer)) as client:
        for effort in ("high", "none"):
            response = await client.post("/v1/chat/completions", headers=ADMIN,
                                         json={**CHAT, "reasoning_effort": effort})
            assert response.status_code == 200
        refused = await client.post("/v1/chat/completions", headers=ADMIN,
                                    json={**CHAT, "reasoning_effort": "extreme"})
        assert refused.json()["error"]["param"] == "reasoning_effort"
    kwargs = [dict(p.template_kwargs) for p in renderer.prompts]
    assert kwargs == [{"enable_thinking": True, "reasoning_effort": "high"},
                      {"enable_thinking": False, "reasoning_effort": "none"}]


@pytest.mark.parametrize("registry", [
    ModelRegistry([ServedModel(MODEL, FakeEngine(MODEL), CharRenderer())]),
    reasoning_registry(FakeEngine(MODEL), switch=None),
])
async def test_reasoning_effort_when_model_has_no_switch_then_400_naming_it(
    registry: ModelRegistry,
) -> None:
    async with client_of(registry) as client:
        chat = await client.post("/v1/chat/completions", headers=ADMIN,
                                 json={**CHAT, "reasoning_effort": "low"})
        responses = await client.post("/v1/responses", headers=ADMIN, json={
            "model": MODEL, "input": "Hi", "reasoning": {"effort": "low"}})
    assert (chat.status_code, chat.json()["error"]["param"]) == (400, "reasoning_effort")
    assert (responses.status_code, responses.json()["error"]["param"]) == (
        400, "reasoning_effort")


async def test_ledger_when_model_reasons_then_row_keeps_reasoning_tokens(
    database_url: str,
) -> None:
    state = build_state(metered_settings(database_url),
                        reasoning_registry(FakeEngine(MODEL, reply=REPLY)), metered=True)
    metering = metering_of(state)
    await metering.start()
    try:
        app = create_app(state, manage_engines=False)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://gw") as client:
            key = await create_key(client, "acme")
            ids = []
            for stream in (False, True):
                response = await client.post("/v1/chat/completions", headers=bearer(key),
                                             json={**CHAT, "stream": stream})
                ids.append(response.headers["x-request-id"])
        rows = [await metering.ledger.row(request_id) for request_id in ids]
        assert [(r.reasoning_tokens, r.completion_tokens) for r in rows if r] == [
            (SPAN_TOKENS, len(REPLY))] * 2
    finally:
        await metering.stop()


class ThinkTokenTokenizer(CharTokenizer):
    """``<think>`` and ``</think>`` as single tokens, as DeepSeek-R1's and Qwen3's are."""

    START, END = 0x110010, 0x110011

    def get_vocab(self) -> dict[str, int]:
        return {"<think>": self.START, "</think>": self.END}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        names = {self.START: "<think>", self.END: "</think>"}
        return "".join(names.get(i) or chr(i) for i in ids)


def test_reasoner_when_parser_counts_its_span_then_its_count_from_the_token_ids() -> None:
    tokenizer = ThinkTokenTokenizer()
    reasoner = Reasoner("deepseek_r1", tokenizer)
    ids = [tokenizer.START, *map(ord, "hmm"), tokenizer.END, *map(ord, "42")]
    assert reasoner.count(ids) == 3  # vLLM's count: the tokens between the two markers
    assert reasoner.split(tokenizer.decode(ids)) == Split("hmm", "42")
    stream = reasoner.stream()
    pieces = [stream.feed(tokenizer.decode([i]), [i]) for i in ids]
    assert "".join(p.reasoning or "" for p in pieces) == "hmm"
    assert "".join(p.content or "" for p in pieces) == "42"


def test_reasoner_when_parser_is_unknown_or_misses_its_tokens_then_refused_at_start() -> None:
    with pytest.raises(ValueError, match="unknown reasoning_parser"):
        Reasoner("no-such-parser", CharTokenizer())
    with pytest.raises(RuntimeError, match="think start/end tokens"):
        Reasoner("deepseek_r1", CharTokenizer())  # no <think> token in the vocabulary
