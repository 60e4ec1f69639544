"""The evaluator's command line and its refusal (no other evaluator in vLLM's place)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.quantization import evaluate
from engine.quantization.capability import Hardware
from engine.quantization.evaluate import Target

AVX2_CPU = Hardware(frozenset({"avx2"}), None)
W4A16_CONFIG = {
    "quant_method": "compressed-tensors",
    "config_groups": {"group_0": {
        "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 64},
        "input_activations": None,
    }},
}


def test_target_when_parsed_then_dtype_and_evaluator_default_to_float32_in_vllm() -> None:
    assert Target.parse("a=/m") == Target("a", Path("/m"), "float32", "vllm")
    assert Target.parse("a=/m:bfloat16") == Target("a", Path("/m"), "bfloat16", "vllm")
    assert Target.parse("a=/m@transformers") == Target("a", Path("/m"), "float32",
                                                       "transformers")
    assert Target.parse("a=/m:bfloat16@vllm") == Target("a", Path("/m"), "bfloat16", "vllm")


@pytest.mark.parametrize(("spec", "message"), [
    ("a", "expected NAME=DIR"), ("=/m", "expected NAME=DIR"),
    ("a=/m@llama.cpp", "evaluator must be one of"), ("a=/m:int4", "dtype must be one of"),
])
def test_target_when_spec_is_malformed_then_refused_naming_the_part(spec: str,
                                                                    message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Target.parse(spec)


def test_vllm_evaluator_when_this_machine_cannot_serve_the_variant_then_refusal_not_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"quantization_config": W4A16_CONFIG}))
    monkeypatch.setattr(evaluate, "detect_hardware", lambda: AVX2_CPU)

    def no_fallback(target: Target) -> dict[str, Any]:
        raise AssertionError(f"{target.name} was measured in transformers instead of vLLM")

    monkeypatch.setattr(evaluate, "_in_transformers", no_fallback)
    result = evaluate.evaluate(Target("w4a16", tmp_path, "bfloat16"))
    assert result == {
        "evaluator": "vllm", "error": "UnsupportedQuantizationError", "dtype": "bfloat16",
        "refused": "model 'w4a16': w4a16 on CPU needs AVX512 (vLLM's 4-bit CPU kernel is "
                   "built only for it); this is a CPU (no AVX512). Serve the w8a8-int8 "
                   "variant instead",
    }
