"""``RequestRun`` after an abort: ``close`` reads on to the engine's final output, as vLLM
sends one (the fake engine does too), and bills exactly the tokens the engine counted."""

from __future__ import annotations

from engine.fake import FakeEngine
from engine.protocol import GenerationRequest, SamplingSpec
from gateway.serving.run import RequestRun
from tests.gateway.streaming.test_timers import Ticket


async def test_run_when_closed_mid_stream_then_drains_the_final_abort_output_and_bills_it_all(
) -> None:
    engine = FakeEngine(reply="abcdefghijklmnop", token_delay_s=0.01)
    ticket = Ticket()
    request = GenerationRequest("r1", (1, 2, 3), SamplingSpec(16, n=2))
    run = RequestRun(engine, [request], ticket, 5.0)
    seen = 0
    async for _ in run.outputs():
        seen += 1
        if seen == 4:
            break  # the client went away
    await run.close()
    outcome = ticket.outcomes[0]
    assert engine.aborted == ["r1"]
    assert run.tally.finished  # the engine's final output was read, not timed out on
    assert {c.finish_reason for c in run.tally.choices} == {"abort"}
    assert outcome.status == "aborted"
    assert outcome.usage.completion_tokens == engine.stats().generation_tokens_total == 2 * seen
