"""A recording survives its trip through a cache store byte for byte (gateway/caching)."""

from __future__ import annotations

from engine.protocol import ChoiceDelta, EngineOutput, SpeculationCounts, TokenLogprob, TopLogprob
from gateway.caching.recording import Recording


def test_recording_round_trip_keeps_every_field() -> None:
    logprobs = (TokenLogprob(7, "Hi", -0.25, (TopLogprob("Hi", -0.25), TopLogprob("Yo", -2.0))),)
    outputs = (
        EngineOutput("r", 5, 0, (ChoiceDelta(0, (7,), "Hi", logprobs),), False),
        EngineOutput("r", 5, 3, (ChoiceDelta(0, (8, 9), "!", None, "length"),
                                 ChoiceDelta(1, (), "", None, "abort")), True,
                     SpeculationCounts(drafted=4, accepted=2)),
    )
    recording = Recording(outputs)
    assert Recording.from_bytes(recording.to_bytes()) == recording
