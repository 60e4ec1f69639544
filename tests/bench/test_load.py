from __future__ import annotations

import asyncio

from bench.load import Endpoint, LoadSpec, _StreamReader, run_level
from tests.conftest import ADMIN_KEY, MODEL


def test_run_level_when_server_sends_usage_then_tokens_come_from_usage(
    fake_gateway_url: str,
) -> None:
    endpoint = Endpoint("fake", fake_gateway_url + "/v1", MODEL, ADMIN_KEY)
    stats = asyncio.run(run_level(endpoint, LoadSpec("chat", 2, 4, 16)))
    assert stats.errors == 0
    assert stats.requests == 4
    assert stats.completion_tokens == 4 * 16
    assert stats.token_source == "usage"
    assert stats.tok_s > 0
    assert stats.ttft_p50_ms is not None
    assert stats.itl_p50_ms is not None


def test_run_level_when_server_rejects_requests_then_every_error_is_counted(
    fake_gateway_url: str,
) -> None:
    endpoint = Endpoint("fake", fake_gateway_url + "/v1", "no-such-model", ADMIN_KEY)
    stats = asyncio.run(run_level(endpoint, LoadSpec("chat", 2, 3, 8)))
    assert stats.errors == 3
    assert stats.completion_tokens == 0
    assert stats.first_error is not None and stats.first_error.startswith("HTTP 404")


def test_reader_when_server_sends_no_usage_then_content_chunks_are_counted() -> None:
    reader = _StreamReader(started=0.0)
    reader.feed({"choices": [{"delta": {"role": "assistant", "content": ""}}]}, 0.1)
    for step in range(5):
        reader.feed({"choices": [{"delta": {"content": "x"}}]}, 0.5 + step * 0.1)
    sample = reader.sample()
    assert sample.token_source == "chunks"
    assert sample.completion_tokens == 5
    assert sample.ttft_s == 0.5
    assert len(sample.gaps_s) == 4


def test_reader_when_usage_arrives_then_it_wins_over_chunk_count() -> None:
    reader = _StreamReader(started=0.0)
    reader.feed({"choices": [{"delta": {"content": "two tokens"}}]}, 0.2)
    reader.feed({"choices": [], "usage": {"completion_tokens": 2}}, 0.3)
    assert reader.sample().completion_tokens == 2
    assert reader.sample().token_source == "usage"


def test_reader_when_stream_carries_an_error_then_sample_fails() -> None:
    reader = _StreamReader(started=0.0)
    reader.feed({"choices": [{"delta": {"content": "a"}}]}, 0.2)
    reader.feed({"error": {"message": "engine died"}}, 0.3)
    assert reader.sample().error is not None
