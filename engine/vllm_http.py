"""vLLM's own server protocol, as the gateway speaks it to a stock ``vllm serve`` replica.

Generation uses vLLM's token-in/token-out endpoint ``POST /inference/v1/generate`` (a server
started with ``--enable-scale-out``), made for gateways that render prompts themselves: the
request carries the prompt's token ids and vLLM's own ``SamplingParams`` fields (built by
engine/vllm_convert.py, the mapping the in-process engine uses too), the tenant's
``cache_salt`` and, where the server schedules by priority, ``priority``. Each streamed
chunk (``output_mode: text``) brings one choice's new token ids, its text delta (vLLM
detokenizes and applies stop strings exactly as in process), logprobs and finish reason;
the last one, asked for with ``include_usage``, the cached prompt tokens
(``--enable-prompt-tokens-details``) and, for one-choice requests, the request's speculation
counts (``--per-request-spec-decode-metrics``). ``POST /inference/v1/abort_requests`` stops
a request: vLLM then streams its final chunk, so tokens generated before the abort are
billed. Embeddings use ``POST /v1/embeddings`` with token-id input.

Top logprobs: vLLM's stream holds the sampled token first, then the best candidates, cut to
``top_logprobs`` entries; they are ranked here by logprob. When sampling picked a token
outside the top ``k`` (never at temperature 0), the list shows it in place of the k-th best.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from engine.errors import EngineRequestError, EngineUnavailableError
from engine.protocol import (
    ChoiceDelta,
    EmbeddingOutput,
    EmbeddingRequest,
    EngineOutput,
    GenerationRequest,
    SpeculationCounts,
    TokenLogprob,
    TopLogprob,
)
from engine.vllm_convert import finish_reason, sampling_json

GENERATE_PATH = "/inference/v1/generate"
ABORT_PATH = "/inference/v1/abort_requests"
EMBED_PATH = "/v1/embeddings"
# vLLM 0.32 names a /inference/v1/generate request "generate-tokens-<request_id>" inside.
ENGINE_ID_PREFIX = "generate-tokens-"
# What a replica answers about the request itself (vLLM's validation, the body's size): the
# client's 400, never a 5xx.
_REQUEST_ERRORS = frozenset({400, 413, 422})


def generate_body(request: GenerationRequest, *, priority: bool) -> dict[str, Any]:
    """The JSON body of one streamed generation (``priority``: the server schedules by it)."""
    body: dict[str, Any] = {
        "request_id": request.request_id,
        "token_ids": list(request.prompt_token_ids),
        "sampling_params": sampling_json(request.sampling),
        "stream": True,
        "stream_options": {"include_usage": True},
        "output_mode": "text",
    }
    if request.cache_salt is not None:
        body["cache_salt"] = request.cache_salt
    if priority and request.priority:
        body["priority"] = request.priority
    if request.lora is not None:  # loaded on the replica under this name (engine/remote.py)
        body["model"] = request.lora.name
    return body


def abort_body(request_id: str) -> dict[str, Any]:
    return {"request_ids": [ENGINE_ID_PREFIX + request_id]}


def embed_body(request: EmbeddingRequest, *, priority: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"input": list(request.prompt_token_ids),
                            "encoding_format": "float", "request_id": request.request_id}
    if request.dimensions is not None:
        body["dimensions"] = request.dimensions
    if priority and request.priority:
        body["priority"] = request.priority
    return body


def embedding_from_body(request: EmbeddingRequest, body: dict[str, Any]) -> EmbeddingOutput:
    try:
        vector = tuple(float(v) for v in body["data"][0]["embedding"])
        tokens = int(body["usage"]["prompt_tokens"])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise EngineUnavailableError(f"unexpected embeddings answer: {exc!r}") from exc
    return EmbeddingOutput(request.request_id, tokens, vector)


def _error_fields(body: Any) -> tuple[str, str | None, int | None]:
    """(message, param, code) of vLLM's ``{"error": {...}}`` (or ``{"error": "..."}``)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        param, code = error.get("param"), error.get("code")
        return (str(error.get("message")), param if isinstance(param, str) else None,
                code if isinstance(code, int) else None)
    return (str(error) if error is not None else str(body)[:200]), None, None


def status_error(status: int, text: str, replica: str) -> Exception:
    """A refused request: the client's mistake (400) or the replica's problem."""
    try:
        message, param, _ = _error_fields(json.loads(text))
    except ValueError:
        message, param = text[:200], None
    if status in _REQUEST_ERRORS:
        return EngineRequestError(message, param)
    if status == 401:
        return EngineUnavailableError(
            f"replica {replica} refused the API key (401): check the model's replica_api_key_env")
    return EngineUnavailableError(f"replica {replica} answered {status}: {message}")


def _in_band_error(body: dict[str, Any], replica: str) -> Exception:
    message, param, code = _error_fields(body)
    if code in _REQUEST_ERRORS:
        return EngineRequestError(message, param)
    return EngineUnavailableError(f"replica {replica} failed mid-stream: {message}")


def _logprobs(token_ids: tuple[int, ...], body: Any, top: int) -> tuple[TokenLogprob, ...] | None:
    if not isinstance(body, dict) or body.get("content") is None:
        return None
    entries: list[dict[str, Any]] = body["content"]
    result = []
    for token_id, entry in zip(token_ids, entries, strict=True):
        ranked = sorted(entry.get("top_logprobs") or (), key=lambda t: -float(t["logprob"]))
        alternatives = tuple(TopLogprob(str(t["token"]), float(t["logprob"]))
                             for t in ranked[:top])
        result.append(TokenLogprob(token_id, str(entry["token"]), float(entry["logprob"]),
                                   alternatives))
    return tuple(result)


def _choice(body: dict[str, Any], top: int) -> ChoiceDelta:
    token_ids = tuple(int(t) for t in body.get("token_ids") or ())
    return ChoiceDelta(index=int(body["index"]), token_ids=token_ids,
                       text=str(body.get("text") or ""),
                       logprobs=_logprobs(token_ids, body.get("logprobs"), top),
                       finish_reason=finish_reason(body.get("finish_reason")))


@dataclass
class _Usage:
    prompt_tokens: int
    cached_tokens: int
    speculation: SpeculationCounts | None


def _usage(chunk: dict[str, Any]) -> _Usage:
    usage = chunk["usage"]
    details = usage.get("prompt_tokens_details") or {}
    spec = (chunk.get("metrics") or {}).get("speculative_decoding")
    counts = None
    if isinstance(spec, dict):
        counts = SpeculationCounts(int(spec["num_draft_tokens"]),
                                   int(spec["num_accepted_draft_tokens"]))
    return _Usage(int(usage["prompt_tokens"]), int(details.get("cached_tokens") or 0), counts)


class StreamDecoder:
    """One request's streamed chunks -> ``EngineOutput`` deltas, the last one ``finished``.

    The delta that finishes the last open choice is held back until the usage chunk that
    follows it, so the final output carries the cached-token and speculation counts.
    """

    def __init__(self, request: GenerationRequest, replica: str) -> None:
        self._request = request
        self._replica = replica
        self._top = request.sampling.logprobs or 0
        self._open = set(range(request.sampling.n))
        self._held: list[ChoiceDelta] = []
        self._usage: _Usage | None = None

    def feed(self, data: str | bytes) -> EngineOutput | None:
        """One ``data:`` payload (``[DONE]`` excluded): an output to pass on, or None."""
        chunk: dict[str, Any] = orjson.loads(data)  # once per token: 2.52 -> 0.64 us
        if "error" in chunk:
            raise _in_band_error(chunk, self._replica)
        if chunk.get("usage") is not None and not chunk.get("choices"):
            self._usage = _usage(chunk)
            return None
        deltas = tuple(_choice(c, self._top) for c in chunk.get("choices") or ())
        for delta in deltas:
            if delta.finish_reason is not None:
                self._open.discard(delta.index)
        if not self._open:
            self._held.extend(deltas)
            return None
        return self._output(deltas, finished=False)

    def finish(self, aborted: bool) -> EngineOutput:
        """The final output once the stream ended (``aborted``: the gateway stopped it)."""
        if self._open and not aborted:
            raise EngineUnavailableError(f"replica {self._replica} ended the stream early")
        closing = [ChoiceDelta(i, (), "", finish_reason="abort") for i in sorted(self._open)]
        return self._output((*self._held, *closing), finished=True)

    def _output(self, deltas: tuple[ChoiceDelta, ...], finished: bool) -> EngineOutput:
        usage = self._usage if finished else None
        if usage is None:
            return EngineOutput(self._request.request_id, len(self._request.prompt_token_ids),
                                0, deltas, finished)
        return EngineOutput(self._request.request_id, usage.prompt_tokens, usage.cached_tokens,
                            deltas, finished, usage.speculation)
