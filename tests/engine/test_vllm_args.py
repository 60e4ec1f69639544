"""One engine's vLLM flags (engine/vllm_args.py): ``vllm serve`` arguments from its settings,
parsed by vLLM's own server parser, and extra engine flags (the chart's engine.extraArgs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.config import EngineConfig, SpeculationConfig
from engine.vllm_args import engine_arg_overrides, vllm_serve_args

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


def _parse_serve_args(args: list[str]) -> Any:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    return make_arg_parser(FlexibleArgumentParser()).parse_args(args)  # type: ignore[no-untyped-call]


def test_serve_args_parse_with_vllms_server_parser_back_to_the_engine_arguments(
    tmp_path: Path,
) -> None:
    from vllm.engine.arg_utils import AsyncEngineArgs

    # Folders that exist: vLLM takes a missing local path for a Hub repository id.
    (tmp_path / "w").mkdir()
    (tmp_path / "d").mkdir()
    speculation = SpeculationConfig("eagle3", 3, draft_path=tmp_path / "d", max_batch_size=32)
    config = EngineConfig("m", tmp_path / "w", dtype="float16", quantization="awq_marlin",
                          enforce_eager=False, max_model_len=16384, scheduling_policy="priority",
                          speculation=speculation)
    parsed = _parse_serve_args(vllm_serve_args(config))
    engine_args = AsyncEngineArgs.from_cli_args(parsed)
    for key, value in config.engine_args_kwargs().items():
        assert getattr(engine_args, key) == (value if value != {} else None), key
    assert parsed.enable_scale_out and parsed.enable_prompt_tokens_details


def test_serve_args_end_with_the_extra_flags_and_refuse_owned_ones() -> None:
    config = EngineConfig("m", Path("/w"), extra_args=("--max-num-batched-tokens", "8192"))
    args = vllm_serve_args(config)
    assert args[-2:] == ["--max-num-batched-tokens", "8192"]
    assert _parse_serve_args(args).max_num_batched_tokens == 8192
    with pytest.raises(ValueError, match="dtype"):
        vllm_serve_args(EngineConfig("m", Path("/w"), extra_args=("--dtype", "half")))
