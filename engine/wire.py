"""The engine server's JSON wire format: protocol dataclasses to plain dicts and back.

Token ids, finish reasons, cached-token and speculation counts travel as they are, so a
remote engine bills exactly like an embedded one. Unknown stats fields are ignored on
decode, so a gateway and an engine server one version apart still talk.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.protocol import (
    ChoiceDelta,
    EmbeddingOutput,
    EmbeddingRequest,
    EngineOutput,
    EngineStats,
    GenerationRequest,
    SamplingSpec,
    SpeculationCounts,
    StructuredOutput,
    TokenLogprob,
    TopLogprob,
)


def encode(value: Any) -> dict[str, Any]:
    """Any of the protocol's dataclasses as a JSON-ready dict."""
    data: dict[str, Any] = dataclasses.asdict(value)
    return data


def _sampling_from_wire(data: dict[str, Any]) -> SamplingSpec:
    """Lists back into tuples (JSON has no tuples); the nested constraint to its class."""
    values: dict[str, Any] = {key: tuple(value) if isinstance(value, list) else value
                              for key, value in data.items()}
    values["logit_bias"] = tuple((int(t), float(b)) for t, b in values.get("logit_bias", ()))
    structured = values.get("structured")
    if structured is not None:
        values["structured"] = StructuredOutput(
            structured["kind"], structured.get("spec", ""), tuple(structured.get("choices", ())))
    return SamplingSpec(**values)


def request_from_wire(data: dict[str, Any]) -> GenerationRequest:
    return GenerationRequest(
        request_id=str(data["request_id"]),
        prompt_token_ids=tuple(int(t) for t in data["prompt_token_ids"]),
        sampling=_sampling_from_wire(data["sampling"]),
        priority=int(data.get("priority", 0)),
        cache_salt=data.get("cache_salt"),
    )


def _logprobs(items: list[dict[str, Any]] | None) -> tuple[TokenLogprob, ...] | None:
    if items is None:
        return None
    return tuple(
        TokenLogprob(
            token_id=int(i["token_id"]),
            token=i["token"],
            logprob=float(i["logprob"]),
            top=tuple(TopLogprob(t["token"], float(t["logprob"])) for t in i["top"]),
        )
        for i in items
    )


def output_from_wire(data: dict[str, Any]) -> EngineOutput:
    spec = data.get("speculation")
    return EngineOutput(
        request_id=data["request_id"],
        prompt_tokens=int(data["prompt_tokens"]),
        cached_prompt_tokens=int(data["cached_prompt_tokens"]),
        choices=tuple(
            ChoiceDelta(
                index=int(c["index"]),
                token_ids=tuple(int(t) for t in c["token_ids"]),
                text=c["text"],
                logprobs=_logprobs(c.get("logprobs")),
                finish_reason=c.get("finish_reason"),
            )
            for c in data["choices"]
        ),
        finished=bool(data["finished"]),
        speculation=SpeculationCounts(**spec) if spec else None,
    )


def embedding_request_from_wire(data: dict[str, Any]) -> EmbeddingRequest:
    dimensions = data.get("dimensions")
    return EmbeddingRequest(str(data["request_id"]),
                            tuple(int(t) for t in data["prompt_token_ids"]),
                            None if dimensions is None else int(dimensions),
                            int(data.get("priority", 0)))


def embedding_from_wire(data: dict[str, Any]) -> EmbeddingOutput:
    return EmbeddingOutput(str(data["request_id"]), int(data["prompt_tokens"]),
                           tuple(float(v) for v in data["embedding"]))


def stats_from_wire(data: dict[str, Any]) -> EngineStats:
    known = {f.name: f for f in dataclasses.fields(EngineStats)}
    values: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known
    }
    return EngineStats(**values)


def merge_stats(parts: list[EngineStats]) -> EngineStats:
    """One model's stats over its replicas: counts add up, KV usage is the mean."""
    if not parts:
        return EngineStats(0, 0, 0.0, 0, 0, 0)
    merged: dict[str, Any] = {}
    for f in dataclasses.fields(EngineStats):
        values = [getattr(p, f.name) for p in parts]
        merged[f.name] = _merge_field(f.name, values)
    return EngineStats(**merged)


def _merge_field(name: str, values: list[Any]) -> Any:
    present = [v for v in values if v is not None]
    if not present:
        return None
    first = present[0]
    averaged = name == "kv_cache_usage" or "window" in name  # ratios, not counts
    if isinstance(first, bool):
        return any(present)
    if isinstance(first, tuple):
        width = max(len(v) for v in present)
        columns = [[v[i] for v in present if i < len(v)] for i in range(width)]
        return tuple(sum(c) / len(c) if averaged else sum(c) for c in columns)
    return sum(present) / len(present) if averaged else sum(present)
