"""Extra vLLM engine flags (the chart's engine.extraArgs) become AsyncEngineArgs overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.vllm_args import engine_arg_overrides

pytestmark = pytest.mark.slow  # imports vLLM's argument parser (no engine starts)


def test_flags_as_vllm_serve_takes_them_become_keyword_overrides() -> None:
    args = ["--max-num-batched-tokens", "8192", "--kv-cache-dtype", "fp8",
            "--enable-chunked-prefill"]
    assert engine_arg_overrides(args) == {"max_num_batched_tokens": 8192,
                                          "kv_cache_dtype": "fp8",
                                          "enable_chunked_prefill": True}


def test_a_flag_the_model_settings_own_is_refused() -> None:
    owned = set(EngineConfig("m", Path("/m")).engine_args_kwargs())
    with pytest.raises(ValueError, match="max_model_len"):
        engine_arg_overrides(["--max-model-len", "4096"], owned)


def test_an_unknown_flag_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown"):
        engine_arg_overrides(["--no-such-flag", "1"])


def test_no_flags_import_nothing() -> None:
    assert engine_arg_overrides(()) == {}
