"""A finished request's engine outputs, recorded once and replayed as an engine would.

Replaying the very deltas the engine produced through the normal response path makes a
hit's body (streamed or not) identical to the original's, and its usage the same token
counts, read from the same token ids.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

from engine.errors import EngineRequestError
from engine.protocol import (
    EmbeddingOutput,
    EmbeddingRequest,
    Engine,
    EngineOutput,
    EngineStats,
    GenerationRequest,
)
from engine.view import EngineView
from gateway.caching.serialization import output_from_json, output_to_json


@dataclass(frozen=True)
class Recording:
    outputs: tuple[EngineOutput, ...]

    def __post_init__(self) -> None:
        if not self.outputs or not self.outputs[-1].finished:
            raise ValueError("a recording holds a whole request, ending with its final output")

    def to_bytes(self) -> bytes:
        return json.dumps([output_to_json(o) for o in self.outputs], separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> Recording:
        return cls(tuple(output_from_json(item) for item in json.loads(data)))


class Recorder:
    """Collects a running request's outputs; ``recording()`` once it finished."""

    def __init__(self) -> None:
        self._outputs: list[EngineOutput] = []

    def add(self, output: EngineOutput) -> None:
        self._outputs.append(output)

    def recording(self) -> Recording | None:
        if not self._outputs or not self._outputs[-1].finished:
            return None
        return Recording(tuple(self._outputs))


def _as_hit(output: EngineOutput, request_id: str) -> EngineOutput:
    """The whole prompt counts as cached; no speculation ran."""
    return dataclasses.replace(output, request_id=request_id, speculation=None,
                               cached_prompt_tokens=output.prompt_tokens)


class ReplayEngine(EngineView):
    """An ``Engine`` that answers one request from a recording (abort stops the replay)."""

    def __init__(self, engine: Engine, recording: Recording) -> None:
        super().__init__(engine)
        self._recording = recording
        self._aborted = False

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        for output in self._recording.outputs:
            if self._aborted:
                return
            yield _as_hit(output, request.request_id)

    async def embed(self, request: EmbeddingRequest) -> EmbeddingOutput:
        raise EngineRequestError("a cache replay pools nothing")

    async def abort(self, request_id: str) -> None:
        del request_id
        self._aborted = True

    async def is_ready(self) -> bool:
        return True

    def stats(self) -> EngineStats:
        return EngineStats(running=0, waiting=0, kv_cache_usage=0.0, prompt_tokens_total=0,
                           generation_tokens_total=0, unfinished_requests=0)
