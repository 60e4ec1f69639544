"""Translation between our engine protocol and vLLM's request/response types."""

from __future__ import annotations

from typing import Any

from engine.protocol import (
    ChoiceDelta,
    EngineOutput,
    FinishReason,
    LoraTarget,
    SamplingSpec,
    SpeculationCounts,
    StructuredOutput,
    TokenLogprob,
    TopLogprob,
)

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "abort": "abort"}


def finish_reason(reason: str | None) -> FinishReason | None:
    """vLLM's finish reason in ours (any other reason vLLM gives is an error)."""
    return _FINISH.get(reason, "error") if reason else None


def structured_json(structured: StructuredOutput | None) -> dict[str, Any] | None:
    """vLLM's ``StructuredOutputsParams`` fields for one constraint (JSON-ready)."""
    if structured is None:
        return None
    if structured.kind == "json_object":
        return {"json_object": True}
    if structured.kind == "choice":
        return {"choice": list(structured.choices)}
    return {structured.kind: structured.spec}


def sampling_json(spec: SamplingSpec) -> dict[str, Any]:
    """vLLM's ``SamplingParams`` fields for ``spec``, JSON-ready: the one mapping, used for
    the in-process engine and as the ``sampling_params`` of vLLM's token-in/token-out API."""
    fields: dict[str, Any] = {
        "n": spec.n,
        "temperature": spec.temperature,
        "top_p": spec.top_p,
        "max_tokens": spec.max_tokens,
        "stop": list(spec.stop) or None,
        "seed": spec.seed,
        "presence_penalty": spec.presence_penalty,
        "frequency_penalty": spec.frequency_penalty,
        "logprobs": spec.logprobs,
        "logit_bias": dict(spec.logit_bias) or None,
        "structured_outputs": structured_json(spec.structured),
        "ignore_eos": spec.ignore_eos,
        "top_k": spec.top_k,
        "min_p": spec.min_p,
        "repetition_penalty": spec.repetition_penalty,
        "min_tokens": spec.min_tokens,
        "stop_token_ids": list(spec.stop_token_ids) or None,
        "include_stop_str_in_output": spec.include_stop_str_in_output,
        "skip_special_tokens": spec.skip_special_tokens,
        "spaces_between_special_tokens": spec.spaces_between_special_tokens,
        "bad_words": list(spec.bad_words) or None,
        "allowed_token_ids": (None if spec.allowed_token_ids is None
                              else list(spec.allowed_token_ids)),
    }
    return {key: value for key, value in fields.items() if value is not None}


def to_lora_request(target: LoraTarget | None) -> Any:
    """vLLM's ``LoRARequest`` for an adapter (None: the base model)."""
    if target is None:
        return None
    from vllm.lora.request import LoRARequest

    return LoRARequest(target.name, target.lora_id, target.path)


def to_sampling_params(spec: SamplingSpec) -> Any:
    from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

    fields = sampling_json(spec)
    if (structured := fields.pop("structured_outputs", None)) is not None:
        fields["structured_outputs"] = StructuredOutputsParams(**structured)
    return SamplingParams(**fields, output_kind=RequestOutputKind.DELTA)


def _token_logprobs(token_ids: list[int], entries: Any, k: int) -> tuple[TokenLogprob, ...]:
    result = []
    for token_id, by_id in zip(token_ids, entries, strict=True):
        chosen = by_id[token_id]
        ranked = sorted(by_id.items(), key=lambda item: item[1].logprob, reverse=True)
        top = tuple(TopLogprob(lp.decoded_token or "", lp.logprob) for _tid, lp in ranked[:k])
        result.append(TokenLogprob(token_id, chosen.decoded_token or "", chosen.logprob, top))
    return tuple(result)


def _speculation(outputs: list[Any]) -> SpeculationCounts | None:
    drafted = accepted = 0
    seen = False
    for completion in outputs:
        metrics = getattr(completion, "spec_decode_metrics", None)
        if metrics is None:
            continue
        seen = True
        drafted += metrics.num_draft_tokens
        accepted += sum(j * count for j, count in enumerate(metrics.histogram))
    return SpeculationCounts(drafted, accepted) if seen else None


def to_engine_output(out: Any, top_logprobs: int) -> EngineOutput:
    """Convert one DELTA ``RequestOutput``; ``top_logprobs`` alternatives per token."""
    choices = []
    for completion in out.outputs:
        token_ids = list(completion.token_ids)
        logprobs = None
        if completion.logprobs is not None:
            logprobs = _token_logprobs(token_ids, completion.logprobs, top_logprobs)
        choices.append(ChoiceDelta(
            index=completion.index,
            token_ids=tuple(token_ids),
            text=completion.text,
            logprobs=logprobs,
            finish_reason=finish_reason(completion.finish_reason),
        ))
    return EngineOutput(
        request_id=out.request_id,
        prompt_tokens=len(out.prompt_token_ids or ()),
        cached_prompt_tokens=out.num_cached_tokens or 0,
        choices=tuple(choices),
        finished=out.finished,
        speculation=_speculation(out.outputs) if out.finished else None,
    )
