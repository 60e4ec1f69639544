"""Sampling parameters every generating endpoint shares, checked against the settings.

Values pydantic has already typed are bounded here by the gateway's own limits (``n``,
``max_tokens``, stop sequences) and by the model (context length, vocabulary).
"""

from __future__ import annotations

from engine.protocol import SamplingSpec, StructuredOutput
from gateway.errors import ContextLengthError, InvalidRequestError, UnsupportedParameterError
from gateway.openai.bodies import SamplingBody
from gateway.serving.plan import StreamUsage
from gateway.settings import LimitSettings


def refuse(body: SamplingBody, refused: dict[str, str]) -> None:
    """A declared-but-refused field set to anything but its default is a named 400."""
    for name, reason in refused.items():
        if getattr(body, name, None) not in (None, False):
            raise UnsupportedParameterError(f"'{name}' is not supported: {reason}", param=name)


def _stop(body: SamplingBody, limits: LimitSettings) -> tuple[str, ...]:
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    if len(stop) > limits.max_stop_sequences:
        raise InvalidRequestError(
            f"at most {limits.max_stop_sequences} stop sequences are allowed", param="stop"
        )
    for item in stop:
        if not item or len(item) > limits.max_stop_length:
            raise InvalidRequestError(
                f"each stop sequence must have 1 to {limits.max_stop_length} characters",
                param="stop",
            )
    return tuple(stop)


def max_tokens(requested: int | None, prompt_len: int, context: int, limits: LimitSettings,
               prompt_param: str) -> int:
    room = context - prompt_len
    if room < 1:
        raise ContextLengthError(
            f"This model's maximum context length is {context} tokens. However, your "
            f"prompt has {prompt_len} tokens, leaving no room for a completion.",
            param=prompt_param,
        )
    if requested is None:
        return min(room, limits.max_tokens_cap)
    if requested > limits.max_tokens_cap or requested > room:
        raise ContextLengthError(
            f"This model's maximum context length is {context} tokens. However, you "
            f"requested {prompt_len + requested} tokens ({prompt_len} in the prompt, "
            f"{requested} for the completion; this gateway caps completions at "
            f"{limits.max_tokens_cap}). Please reduce the prompt or max_tokens.",
            param="max_tokens",
        )
    return requested


def _token_key(key: str, vocab_size: int) -> int | None:
    """A logit_bias key as a token id: ASCII digits only (``"²".isdigit()`` is true, and
    ``int`` reads other scripts' digits too), at most as long as the largest id."""
    if not key.isascii() or not key.isdigit() or len(key) > len(str(vocab_size)):
        return None
    token = int(key)
    return token if token < vocab_size else None


def _logit_bias(body: SamplingBody, vocab_size: int) -> tuple[tuple[int, float], ...]:
    pairs = []
    for key, bias in (body.logit_bias or {}).items():
        if (token := _token_key(key, vocab_size)) is None:
            raise InvalidRequestError(
                f"logit_bias keys must be token ids in [0, {vocab_size}) written in ASCII "
                f"digits; got {key[:20]!r}", param="logit_bias")
        if not -100 <= bias <= 100:  # NaN fails this too
            raise InvalidRequestError("logit_bias values must be in [-100, 100]",
                                      param="logit_bias")
        pairs.append((token, float(bias)))
    return tuple(sorted(pairs))


def _top_k(top_k: int | None, vocab_size: int) -> int:
    """vLLM's top_k: 0 is off, and so is -1 or any k that keeps the whole vocabulary (an
    int64 overflow otherwise, past vLLM's validation, in its engine's transport)."""
    if top_k is not None and top_k < -1:
        raise InvalidRequestError("top_k must be -1 (off), 0 (off) or positive", param="top_k")
    return top_k if top_k is not None and 0 < top_k < vocab_size else 0


def _token_ids(ids: list[int] | None, vocab_size: int, param: str) -> tuple[int, ...]:
    if any(i >= vocab_size for i in ids or ()):
        raise InvalidRequestError(f"token ids must be in [0, {vocab_size})", param=param)
    return tuple(ids or ())


def _bounded_logprobs(body: SamplingBody, logprobs: int | None, max_tokens: int,
                      limits: LimitSettings) -> None:
    """Logprobs cost memory per token and alternative: bound what one request may hold."""
    n = body.n or 1
    if logprobs and n * max_tokens * (logprobs + 1) > limits.max_logprob_entries:
        raise InvalidRequestError(
            f"n x max_tokens x (top_logprobs + 1) must be at most "
            f"{limits.max_logprob_entries}", param="top_logprobs")


def sampling_spec(body: SamplingBody, max_tokens: int, logprobs: int | None,
                  limits: LimitSettings, vocab_size: int,
                  structured: StructuredOutput | None) -> SamplingSpec:
    n = body.n or 1
    if n > limits.max_n:
        raise InvalidRequestError(f"n must be at most {limits.max_n}", param="n")
    if body.min_tokens is not None and body.min_tokens > max_tokens:
        raise InvalidRequestError("min_tokens must not exceed max_tokens", param="min_tokens")
    if body.allowed_token_ids is not None and not body.allowed_token_ids:
        raise InvalidRequestError("allowed_token_ids must not be empty",
                                  param="allowed_token_ids")
    _bounded_logprobs(body, logprobs, max_tokens, limits)
    allowed = body.allowed_token_ids
    return SamplingSpec(
        max_tokens=max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        n=n,
        stop=_stop(body, limits),
        seed=body.seed,
        presence_penalty=body.presence_penalty or 0.0,
        frequency_penalty=body.frequency_penalty or 0.0,
        logprobs=logprobs,
        logit_bias=_logit_bias(body, vocab_size),
        structured=structured,
        ignore_eos=bool(body.ignore_eos),
        top_k=_top_k(body.top_k, vocab_size),
        min_p=body.min_p or 0.0,
        repetition_penalty=1.0 if body.repetition_penalty is None else body.repetition_penalty,
        min_tokens=body.min_tokens or 0,
        stop_token_ids=_token_ids(body.stop_token_ids, vocab_size, "stop_token_ids"),
        include_stop_str_in_output=bool(body.include_stop_str_in_output),
        skip_special_tokens=body.skip_special_tokens is not False,
        spaces_between_special_tokens=body.spaces_between_special_tokens is not False,
        bad_words=tuple(body.bad_words or ()),
        allowed_token_ids=None if allowed is None else _token_ids(allowed, vocab_size,
                                                                   "allowed_token_ids"),
    )


def stream_usage(body: SamplingBody) -> StreamUsage:
    """OpenAI: a stream reports usage only when ``stream_options.include_usage`` asks."""
    options = body.stream_options
    if options is not None and not body.stream:
        raise InvalidRequestError("stream_options needs stream: true", param="stream_options")
    if options is None or not options.include_usage:
        if options is not None and options.continuous_usage_stats:
            raise InvalidRequestError("continuous_usage_stats needs include_usage: true",
                                      param="stream_options.continuous_usage_stats")
        return "none"
    return "continuous" if options.continuous_usage_stats else "final"
