from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.errors import UnsupportedQuantizationError
from engine.quantization.capability import (
    Hardware,
    check,
    require_supported,
    scheme_of,
    servable,
    serving_dtype,
)

AVX512_CPU = Hardware(frozenset({"avx512f", "avx512_bf16"}), None)
AMX_CPU = Hardware(frozenset({"avx512f", "amx_tile", "amx_bf16"}), None)
AVX2_CPU = Hardware(frozenset({"avx2"}), None)
AMPERE = Hardware(frozenset(), (8, 0))
HOPPER = Hardware(frozenset(), (9, 0))
TURING = Hardware(frozenset(), (7, 5))

W8A8_CONFIG = {
    "quant_method": "compressed-tensors",
    "config_groups": {"group_0": {
        "weights": {"num_bits": 8, "type": "int", "strategy": "channel"},
        "input_activations": {"num_bits": 8, "type": "int", "dynamic": True},
    }},
}
W4A16_CONFIG = {
    "quant_method": "compressed-tensors",
    "config_groups": {"group_0": {
        "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 64},
        "input_activations": None,
    }},
}
FP8_CONFIG = {
    "quant_method": "compressed-tensors",
    "config_groups": {"group_0": {
        "weights": {"num_bits": 8, "type": "float"},
        "input_activations": {"num_bits": 8, "type": "float"},
    }},
}


def _model(tmp_path: Path, quantization_config: dict[str, object] | None) -> Path:
    config: dict[str, object] = {"architectures": ["LlamaForCausalLM"]}
    if quantization_config is not None:
        config["quantization_config"] = quantization_config
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize(
    ("config", "scheme"),
    [(None, "none"), (W8A8_CONFIG, "w8a8-int8"), (W4A16_CONFIG, "w4a16"), (FP8_CONFIG, "fp8"),
     ({"quant_method": "awq", "bits": 4}, "w4a16")],
)
def test_scheme_of_reads_the_checkpoint_quantization_config(
    tmp_path: Path, config: dict[str, object] | None, scheme: str
) -> None:
    assert scheme_of(_model(tmp_path, config)) == scheme


def test_scheme_of_prefers_the_explicit_quantization_setting(tmp_path: Path) -> None:
    assert scheme_of(_model(tmp_path, None), quantization="fp8") == "fp8"


def test_fp8_on_cpu_without_amx_is_rejected_with_a_clear_message() -> None:
    with pytest.raises(UnsupportedQuantizationError, match="fp8 on CPU needs AMX"):
        check("fp8", "bfloat16", AVX512_CPU)


def test_fp8_on_gpu_older_than_ada_is_rejected() -> None:
    with pytest.raises(UnsupportedQuantizationError, match=r">= 8\.9 \(Ada or Hopper\).*8\.0"):
        check("fp8", "bfloat16", AMPERE)


def test_fp8_runs_on_hopper_and_on_amx_cpus() -> None:
    check("fp8", "bfloat16", HOPPER)
    check("fp8", "bfloat16", AMX_CPU)


def test_int8_and_4bit_run_on_this_projects_cpu_kind() -> None:
    check("w8a8-int8", "float32", AVX512_CPU)
    check("w4a16", "bfloat16", AVX512_CPU)


def test_4bit_on_cpu_in_float32_is_rejected_naming_bfloat16() -> None:
    with pytest.raises(UnsupportedQuantizationError, match="needs dtype bfloat16"):
        check("w4a16", "float32", AVX512_CPU)


def test_4bit_on_a_cpu_without_avx512_is_rejected_while_int8_runs() -> None:
    # vLLM's AVX2 CPU build has no cpu_gemm_wna16; its oneDNN INT8 path runs in float32.
    with pytest.raises(UnsupportedQuantizationError, match="w4a16 on CPU needs AVX512"):
        check("w4a16", "bfloat16", AVX2_CPU)
    check("w8a8-int8", "float32", AVX2_CPU)
    assert servable("w8a8-int8", "float32", AVX2_CPU) is None
    assert "AVX512" in (servable("w4a16", "bfloat16", AVX2_CPU) or "")


def test_4bit_marlin_needs_ampere_while_int8_runs_on_turing() -> None:
    check("w8a8-int8", "float16", TURING)
    with pytest.raises(UnsupportedQuantizationError, match=r"w4a16 .*>= 8\.0"):
        check("w4a16", "float16", TURING)


def test_require_supported_names_the_model_and_passes_unquantized_models(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "fp8").mkdir()
    plain = EngineConfig(model_name="plain", model_path=_model(tmp_path / "plain", None))
    require_supported(plain, AVX2_CPU)
    fp8 = EngineConfig(model_name="m-fp8", model_path=_model(tmp_path / "fp8", FP8_CONFIG))
    with pytest.raises(UnsupportedQuantizationError, match="model 'm-fp8': fp8 on CPU"):
        require_supported(fp8, AVX512_CPU)


def test_serving_dtype_when_w8a8_on_amx_cpu_then_bfloat16_activations() -> None:
    # vLLM's AMX INT8 kernel (int8_scaled_mm_with_quant) rejects float32 activations.
    assert serving_dtype("w8a8-int8", "float32", AMX_CPU) == "bfloat16"
    assert serving_dtype("w8a8-int8", "float32", AVX512_CPU) == "float32"
    assert serving_dtype("w8a8-int8", "float32", HOPPER) == "float32"
    assert serving_dtype("w4a16", "bfloat16", AMX_CPU) == "bfloat16"
    assert serving_dtype("none", "float32", AMX_CPU) == "float32"
