"""Extra vLLM engine flags, written as ``vllm serve`` takes them, for one engine.

``llm-gateway engine serve --model M -- --max-num-batched-tokens 8192 --kv-cache-dtype fp8``:
the flags after ``--`` are parsed by vLLM's own ``AsyncEngineArgs`` parser, and only those
given become keyword overrides. A flag for something the model's settings already choose
(dtype, max_model_len, ...) is refused: the gateway plans requests from those settings, so
they must stay the one place that sets them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any


def engine_arg_overrides(args: Sequence[str], owned: Collection[str] = ()) -> dict[str, Any]:
    """``AsyncEngineArgs`` keywords that ``args`` set (a ValueError for unknown or owned ones)."""
    if not args:
        return {}
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = AsyncEngineArgs.add_cli_args(
        FlexibleArgumentParser(exit_on_error=False))  # type: ignore[no-untyped-call]
    try:
        defaults = vars(parser.parse_args([]))
        given, unknown = parser.parse_known_args(list(args))  # type: ignore[no-untyped-call]
    except Exception as exc:  # argparse's ArgumentError, vLLM's own checks
        raise ValueError(f"extra engine arguments {list(args)}: {exc}") from exc
    if unknown:
        raise ValueError(f"unknown vLLM engine arguments: {unknown}")
    overrides = {key: value for key, value in vars(given).items()
                 if key in defaults and value != defaults[key]}
    if clash := sorted(set(overrides) & set(owned)):
        raise ValueError(f"{clash} are set by the model's settings, not by extra arguments")
    return overrides
