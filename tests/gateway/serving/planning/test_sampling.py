"""Sampling values vLLM would refuse (or crash on) are 400s naming the field, never 500s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.fake import CharRenderer, FakeEngine
from engine.protocol import EngineOutput, GenerationRequest
from tests.conftest import MODEL
from tests.gateway.serving.planning.clients import accepted, chat, completion, refused

VOCAB = CharRenderer().vocab_size
INT64_MAX = 2**63 - 1


class RecordingEngine(FakeEngine):
    """Keeps the requests it was sent."""

    def __init__(self) -> None:
        super().__init__(model_name=MODEL)
        self.requests: list[GenerationRequest] = []

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        self.requests.append(request)
        async for out in super().generate(request):
            yield out


@pytest.mark.parametrize("key", [
    "²",  # str.isdigit() says yes, int() says no: was a 500
    "\u0661",  # Arabic-Indic one: int() reads it as 1, vLLM's server would not
    "1" * 5000,  # past int()'s digit limit: was a 500
    str(VOCAB),  # one past the vocabulary
    "-1", " 1", "1.0", "",
])
async def test_logit_bias_when_the_key_is_not_an_ascii_token_id_then_400(key: str) -> None:
    error = await refused(chat(logit_bias={key: 5}), "logit_bias")
    assert "ASCII digits" in error["message"]


@pytest.mark.parametrize(("bias", "param"), [
    ("101", "logit_bias"), ("-100.5", "logit_bias"),
    ("1e999", "logit_bias.1"),  # json reads it as inf: refused by the body's type, by entry
    ("true", "logit_bias.1"),
])
async def test_logit_bias_when_the_value_is_out_of_range_then_400(bias: str, param: str) -> None:
    text = f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "hi"}}], ' \
           f'"logit_bias": {{"1": {bias}}}}}'
    error = await refused(text, param)
    assert error["type"] == "invalid_request_error"


async def test_logit_bias_when_ascii_ids_then_accepted_with_leading_zeros() -> None:
    await accepted(chat(logit_bias={"0": 1, "00042": -3.5}))


async def test_logit_bias_when_more_entries_than_the_bound_then_400() -> None:
    error = await refused(chat(logit_bias={str(i): 1 for i in range(5)}), "logit_bias",
                          max_logit_bias=4)
    assert "at most 4" in error["message"]


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/v1/completions"])
@pytest.mark.parametrize("seed", [99999999999999999999999, INT64_MAX + 1, -(2**63) - 1,
                                  2**64])
async def test_seed_when_past_int64_then_400_naming_seed(route: str, seed: int) -> None:
    body = chat(seed=seed) if route.endswith("chat/completions") else completion(seed=seed)
    await refused(body, "seed", route=route)


async def test_seed_when_past_int64_on_responses_then_400_naming_seed() -> None:
    await refused({"model": MODEL, "input": "hi", "seed": 2**64}, "seed", route="/v1/responses")


async def test_seed_when_at_the_int64_bounds_then_accepted() -> None:
    await accepted(chat(seed=INT64_MAX))
    await accepted(chat(seed=-(2**63)))


async def test_top_k_when_past_the_vocabulary_then_off_instead_of_an_int64_overflow() -> None:
    engine = RecordingEngine()
    await accepted(chat(top_k=99999999999999999999), engine=engine)
    await accepted(chat(top_k=7), engine=engine)
    assert [r.sampling.top_k for r in engine.requests] == [0, 7]


async def test_top_k_when_below_minus_one_then_400() -> None:
    await refused(chat(top_k=-2), "top_k")


@pytest.mark.parametrize(("fields", "param"), [
    ({"stop_token_ids": [VOCAB]}, "stop_token_ids"),
    ({"allowed_token_ids": [1, VOCAB + 5]}, "allowed_token_ids"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"top_p": 0}, "top_p"),
    ({"min_p": 1.5}, "min_p"),
    ({"repetition_penalty": 0}, "repetition_penalty"),
])
async def test_sampling_when_vllm_would_refuse_the_value_then_400(
    fields: dict[str, Any], param: str
) -> None:
    await refused(chat(**fields), param)


@pytest.mark.parametrize(("fields", "param"), [
    ({"prompt": [1, VOCAB]}, "prompt"),
    ({"logprobs": 6}, "logprobs"),
])
async def test_completion_when_vllm_would_refuse_the_value_then_400(
    fields: dict[str, Any], param: str
) -> None:
    await refused(completion(**fields), param, route="/v1/completions")


@pytest.mark.parametrize("field", ["temperature", "top_p", "presence_penalty", "min_p"])
async def test_float_when_it_parses_as_infinity_then_400_naming_it(field: str) -> None:
    text = f'{{"model": "{MODEL}", "messages": [{{"role": "user", "content": "hi"}}], ' \
           f'"{field}": 1e999}}'
    await refused(text, field)


async def test_bad_words_when_one_is_empty_then_400_naming_the_entry() -> None:
    # vLLM refuses [""] at add_request with a message but no param (fuzz finding F10)
    error = await refused(chat(bad_words=["fine", ""]), "bad_words.1")
    assert error["type"] == "invalid_request_error"
    await accepted(chat(bad_words=["fine"]))
