"""The fair-share benchmark's machinery against a metered gateway around the fake engine
(seats 2, so its queue is in play): tenants and keys made, both phases' tokens counted per
tenant from the usage on every chunk, B's TTFTs taken, the report rendered. Shares and
timings are the benchmark's to record, not asserted here."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bench import fair_share
from bench.fair_share_gateways import SharedEngine
from bench.fair_share_report import render
from engine.fake import CharRenderer, FakeEngine
from engine.protocol import EngineOutput, GenerationRequest, SamplingSpec
from gateway.app import create_app
from gateway.bootstrap import build_state
from gateway.serving.registry import ModelRegistry, ServedModel
from tests.gateway.metered import metered_settings, on_loopback


async def test_measure_when_run_on_a_fake_gateway_then_tokens_ttfts_and_report() -> None:
    folder = Path(tempfile.mkdtemp(prefix="llmgw-fair-bench-"))
    engine = FakeEngine(fair_share.MODEL, reply="x" * 40, token_delay_s=0.005)
    registry = ModelRegistry([ServedModel(engine.model_name, engine, CharRenderer(), seats=2)])
    state = build_state(metered_settings(f"sqlite+aiosqlite:///{folder}/ledger.db"), registry,
                        metered=True)
    args = argparse.Namespace(seats=2, phase_s=1.5, unloaded_s=0.5, long_tokens=32,
                              short_tokens=4)
    async with on_loopback(create_app(state, manage_engines=False)) as url:
        first = await fair_share.measure(url, False, args)
        fair = await fair_share.measure(url, True, args)
    assert first["unloaded"]["n"] >= 1 and first["unloaded"]["errors"] == {}
    for cell in (first["shares_1_1"], fair["shares_1_1"], fair["shares_3_1"]):
        assert set(cell["tokens"]) == {"a", "b"} and cell["errors"] == {}
    machine = {"cpu": "fake", "cores_usable": 2, "memory_gib": 1, "git_commit": "c",
               "vllm": None, "load_average_start": [0.0, 0.0, 0.0]}
    text = render({"machine": machine, "load_average_end": [0.0, 0.0, 0.0],
                   "args": {k: str(v) for k, v in vars(args).items()},
                   "modes": {"first_come": first, "fair": fair}})
    assert "| fair, weights 3:1 (goal 0.75) |" in text and "B alone (unloaded)" in text


async def test_shared_engine_when_full_then_the_next_request_waits_and_counts_as_waiting() -> (
        None):
    engine = SharedEngine(fair_share.MODEL, reply="abc", token_delay_s=0.01, seats=1)
    first = engine.generate(GenerationRequest("r1", (1,), SamplingSpec(max_tokens=3)))
    second = engine.generate(GenerationRequest("r2", (1,), SamplingSpec(max_tokens=3)))
    await anext(first)
    async def next_of_second() -> EngineOutput:
        return await anext(second)

    waiting = asyncio.create_task(next_of_second())
    await asyncio.sleep(0.05)
    assert not waiting.done() and engine.stats().waiting == 1
    async for _ in first:
        pass
    await waiting
    assert engine.stats().waiting == 0
    async for _ in second:
        pass
