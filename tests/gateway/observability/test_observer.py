"""Per-request metrics through the real app around the fake engine (``/metrics`` scraped)."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.fake import FakeEngine
from engine.protocol import SpeculationCounts
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.observer import MetricsObserver
from gateway.serving.accounting import Outcome, Settled
from gateway.serving.tally import Usage
from tests.conftest import MODEL

REPLY = "The capital of France is Paris."
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "Capital of France?"}]}


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def test_metrics_when_chat_completes_then_counts_request_tokens_and_timings(
    fake_client: httpx.AsyncClient,
) -> None:
    response = await fake_client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    usage = response.json()["usage"]

    samples = await scrape(fake_client)
    owner = {"model": MODEL, "tenant": "admin"}
    assert value(samples, "llmgw_requests_total", status="ok", **owner) == 1
    assert value(samples, "llmgw_prompt_tokens_total", **owner) == usage["prompt_tokens"]
    assert value(samples, "llmgw_completion_tokens_total", **owner) == len(REPLY)
    assert value(samples, "llmgw_request_latency_seconds_count", model=MODEL) == 1
    assert value(samples, "llmgw_time_to_first_token_seconds_count", model=MODEL) == 1
    # one token per engine step: a gap between each pair of consecutive steps
    assert value(samples, "llmgw_inter_token_latency_seconds_count", model=MODEL) == len(REPLY) - 1


async def test_metrics_when_stream_cut_by_max_tokens_then_status_is_length(
    fake_client: httpx.AsyncClient,
) -> None:
    body = {**CHAT, "stream": True, "max_tokens": 5}
    async with fake_client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        text = "".join([chunk async for chunk in response.aiter_text()])
    assert "[DONE]" in text

    samples = await scrape(fake_client)
    owner = {"model": MODEL, "tenant": "admin"}
    assert value(samples, "llmgw_requests_total", status="length", **owner) == 1
    assert value(samples, "llmgw_completion_tokens_total", **owner) == 5


async def test_metrics_when_model_unknown_then_counts_the_error_response(
    fake_client: httpx.AsyncClient,
) -> None:
    response = await fake_client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
    assert response.status_code == 404

    samples = await scrape(fake_client)
    assert value(samples, "llmgw_http_errors_total", code="404",
                 type="invalid_request_error") == 1
    assert ("llmgw_requests_total", frozenset({("model", "nope")})) not in samples


async def test_metrics_when_scraped_then_engine_gauges_and_queue_histogram_are_there(
    fake_client: httpx.AsyncClient, fake_engine: FakeEngine,
) -> None:
    await fake_client.post("/v1/chat/completions", json=CHAT)
    samples = await scrape(fake_client)
    assert value(samples, "llmgw_engine_running", model=MODEL) == 0
    assert value(samples, "llmgw_engine_waiting", model=MODEL) == 0
    assert value(samples, "llmgw_engine_generation_tokens_total",
                 model=MODEL) == fake_engine.stats().generation_tokens_total
    assert value(samples, "llmgw_queue_time_seconds_bucket", model=MODEL, le="+Inf") == 0


def test_observer_when_ticket_reports_cost_and_speculation_then_counts_them() -> None:
    metrics = GatewayMetrics()
    observer = MetricsObserver(metrics, "req-1", "m", "acme")
    outcome = Outcome(usage=Usage(10, 4, cached_tokens=8), status="ok",
                      speculation=SpeculationCounts(drafted=6, accepted=3), ttft_s=0.2,
                      latency_s=0.9)
    observer.settled(outcome, Settled(Decimal("0.000125")))

    def get(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert get("llmgw_cost_total", model="m", tenant="acme") is None  # metering counts cost
    assert get("llmgw_spec_draft_tokens_total", model="m") == 6
    assert get("llmgw_spec_accepted_tokens_total", model="m") == 3
    assert get("llmgw_cached_prompt_tokens_total", model="m", tenant="acme") == 8
    assert get("llmgw_prefix_cache_hits_total", model="m") == 1


def test_settled_when_cost_is_negative_or_not_finite_then_refused() -> None:
    assert Settled(Decimal("1.5")).cost == Decimal("1.5")
    assert Settled().cost is None
    for bad in (Decimal(-1), Decimal("NaN"), Decimal("Infinity")):
        with pytest.raises(ValueError):
            Settled(bad)
