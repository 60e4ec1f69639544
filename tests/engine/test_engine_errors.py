"""What an engine raises about a request is a request error (the client's 400); a real
engine failure is not: the in-process engine's transport errors and a replica's answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.config import EngineConfig
from engine.embedded import EmbeddedEngine
from engine.errors import EngineRequestError, EngineUnavailableError
from engine.protocol import GenerationRequest, SamplingSpec
from engine.vllm_http import StreamDecoder, status_error


@pytest.mark.parametrize("status", [400, 413, 422])
def test_replica_status_when_about_the_request_then_a_request_error_with_its_param(
    status: int
) -> None:
    body = json.dumps({"error": {"message": "seed out of range", "param": "seed",
                                 "code": status}})
    error = status_error(status, body, "http://10.0.0.5:8001")
    assert isinstance(error, EngineRequestError)
    assert error.param == "seed" and str(error) == "seed out of range"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_replica_status_when_its_own_failure_then_unavailable(status: int) -> None:
    assert isinstance(status_error(status, "boom", "r"), EngineUnavailableError)


def test_replica_error_in_the_stream_when_code_400_then_a_request_error() -> None:
    request = GenerationRequest("r1", (1, 2), SamplingSpec(max_tokens=2))
    decoder = StreamDecoder(request, "r")
    with pytest.raises(EngineRequestError) as refusal:
        decoder.feed(json.dumps({"error": {"message": "bad regex", "code": 400,
                                           "param": "structured_outputs"}}))
    assert refusal.value.param == "structured_outputs"
    with pytest.raises(EngineUnavailableError):
        StreamDecoder(request, "r").feed(json.dumps({"error": {"message": "x", "code": 500}}))


class _FailingLlm:
    """vLLM's AsyncLLM whose generate fails as add_request does for ``cause``."""

    errored = False

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause

    async def generate(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        from vllm.v1.engine.exceptions import EngineGenerateError

        raise EngineGenerateError() from self.cause
        yield  # pragma: no cover


async def _generate(engine: EmbeddedEngine) -> None:
    request = GenerationRequest("r1", (1, 2), SamplingSpec(max_tokens=2))
    async for _ in engine.generate(request):
        pass


@pytest.mark.parametrize("cause", [
    OverflowError("can't serialize ints < -2**63 or > 2**64 - 1"),
    UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
])
async def test_embedded_when_the_transport_cannot_carry_a_value_then_a_request_error(
    tmp_path: Path, cause: BaseException
) -> None:
    engine = EmbeddedEngine(EngineConfig("m", tmp_path))
    engine._llm = _FailingLlm(cause)  # type: ignore[assignment]
    with pytest.raises(EngineRequestError) as refusal:
        await _generate(engine)
    assert "2**" not in str(refusal.value) and "surrogates" not in str(refusal.value)


async def test_embedded_when_the_engine_itself_fails_then_not_a_request_error(
    tmp_path: Path
) -> None:
    from vllm.v1.engine.exceptions import EngineGenerateError

    engine = EmbeddedEngine(EngineConfig("m", tmp_path))
    engine._llm = _FailingLlm(RuntimeError("CUDA error: device-side assert"))  # type: ignore[assignment]
    with pytest.raises(EngineGenerateError):
        await _generate(engine)


def test_request_error_when_xgrammar_writes_its_source_location_then_it_is_cut() -> None:
    error = EngineRequestError("Failed to transform regex into a grammar: [06:11:15] "
                               "/project/cpp/regex_converter.cc:83: Lookbehind is not "
                               "supported yet.", "structured_outputs.regex")
    assert str(error) == ("Failed to transform regex into a grammar: Lookbehind is not "
                          "supported yet.")
