"""A recording's engine outputs as JSON and back, for the cache stores (Redis, in memory).

Token ids, texts, logprobs, finish reasons and cached-token and speculation counts are kept
as they are, so a replayed answer bills exactly like the original.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.protocol import ChoiceDelta, EngineOutput, SpeculationCounts, TokenLogprob, TopLogprob


def output_to_json(output: EngineOutput) -> dict[str, Any]:
    data: dict[str, Any] = dataclasses.asdict(output)
    return data


def _logprobs(items: list[dict[str, Any]] | None) -> tuple[TokenLogprob, ...] | None:
    if items is None:
        return None
    return tuple(
        TokenLogprob(int(i["token_id"]), i["token"], float(i["logprob"]),
                     tuple(TopLogprob(t["token"], float(t["logprob"])) for t in i["top"]))
        for i in items
    )


def _choice(data: dict[str, Any]) -> ChoiceDelta:
    return ChoiceDelta(index=int(data["index"]),
                       token_ids=tuple(int(t) for t in data["token_ids"]),
                       text=data["text"], logprobs=_logprobs(data.get("logprobs")),
                       finish_reason=data.get("finish_reason"))


def output_from_json(data: dict[str, Any]) -> EngineOutput:
    spec = data.get("speculation")
    return EngineOutput(
        request_id=data["request_id"],
        prompt_tokens=int(data["prompt_tokens"]),
        cached_prompt_tokens=int(data["cached_prompt_tokens"]),
        choices=tuple(_choice(c) for c in data["choices"]),
        finished=bool(data["finished"]),
        speculation=SpeculationCounts(**spec) if spec else None,
    )
