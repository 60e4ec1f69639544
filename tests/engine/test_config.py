from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from engine.config import CpuConfig, EngineConfig, EngineOptions, SpeculationConfig


def test_ngram_speculation_maps_to_vllm_lookup_sizes() -> None:
    spec = SpeculationConfig(method="ngram", num_speculative_tokens=3, prompt_lookup_min=1,
                             prompt_lookup_max=5)
    assert spec.to_vllm() == {"method": "ngram", "num_speculative_tokens": 3,
                              "prompt_lookup_min": 1, "prompt_lookup_max": 5}


def test_draft_model_speculation_names_its_folder() -> None:
    spec = SpeculationConfig(method="draft_model", draft_path=Path("/d"))
    assert spec.to_vllm() == {"method": "draft_model", "num_speculative_tokens": 4,
                              "model": "/d"}


def test_eagle_speculation_names_its_head_folder() -> None:
    spec = SpeculationConfig(method="eagle", draft_path=Path("/h"), num_speculative_tokens=2)
    assert spec.to_vllm() == {"method": "eagle", "num_speculative_tokens": 2, "model": "/h"}
    with pytest.raises(ValueError, match="draft_path"):
        SpeculationConfig(method="eagle")


def test_max_batch_size_turns_drafting_off_above_it() -> None:
    spec = SpeculationConfig(method="ngram", num_speculative_tokens=4, max_batch_size=8)
    vllm = spec.to_vllm()
    assert vllm is not None
    assert vllm["num_speculative_tokens_per_batch_size"] == [[1, 8, 4], [9, 9, 0]]


def test_adaptive_model_drafter_skips_its_pass_above_the_limit_unless_told_to_fill() -> None:
    head = {"method": "eagle3", "draft_path": Path("/h"), "num_speculative_tokens": 2}
    skip = {"llm_gateway": {"draft_under_load": "skip"}}
    assert SpeculationConfig(**head, max_batch_size=4).vllm_additional_config() == skip
    assert EngineConfig("m", Path("/m"), speculation=SpeculationConfig(
        **head, max_batch_size=4)).engine_args_kwargs()["additional_config"] == skip
    fill = SpeculationConfig(**head, max_batch_size=4, draft_under_load="fill")
    assert fill.vllm_additional_config() == {}
    assert SpeculationConfig(**head).vllm_additional_config() == {}  # drafts at every size
    ngram = SpeculationConfig(method="ngram", max_batch_size=4)  # no drafter pass to skip
    assert ngram.vllm_additional_config() == {}
    with pytest.raises(ValueError, match="draft_under_load"):
        SpeculationConfig(**head, draft_under_load="sometimes")  # type: ignore[arg-type]


def test_draft_method_without_a_draft_path_is_rejected() -> None:
    with pytest.raises(ValueError, match="draft_path"):
        SpeculationConfig(method="draft_model")


def test_acceptance_floor_outside_unit_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match="acceptance_floor"):
        SpeculationConfig(acceptance_floor=1.5)


def test_engine_args_ask_for_per_request_metrics_only_when_speculating() -> None:
    plain = EngineConfig("m", Path("/m")).engine_args_kwargs()
    spec = EngineConfig("m", Path("/m"), speculation=SpeculationConfig(method="ngram"))
    assert plain["per_request_spec_decode_metrics"] == "none"
    assert plain["speculative_config"] is None
    assert spec.engine_args_kwargs()["per_request_spec_decode_metrics"] == "summary"


def test_profile_setting_draft_under_load_reaches_the_engine_config() -> None:
    from gateway.settings import load_settings

    model = "smollm2-135m-instruct"
    served = load_settings(profile="cpu-speculation").engine_config(model)
    assert served.engine_args_kwargs()["additional_config"] == {
        "llm_gateway": {"draft_under_load": "skip"}}
    filling = load_settings(profile="test-speculation").engine_config(model)
    assert filling.speculation.draft_under_load == "fill"
    assert filling.engine_args_kwargs()["additional_config"] == {}


@pytest.mark.parametrize("build,message", [
    (lambda: EngineConfig("m", Path("/m"), max_model_len=8), "max_model_len must be at least 16"),
    (lambda: EngineConfig("m", Path("/m"), gpu_memory_utilization=0.0),
     r"gpu_memory_utilization must be in \(0, 1\]"),
    (lambda: EngineConfig("m", Path("/m"), tensor_parallel_size=0), "tensor_parallel_size"),
    (lambda: EngineConfig("m", Path("/m"), dtype="float64"),  # type: ignore[arg-type]
     "dtype must be one of 'float32'"),
    (lambda: CpuConfig(kv_cache_gib=0), "kv_cache_gib must be at least 1"),
    (lambda: CpuConfig(reserved_cpus=-1), "reserved_cpus must be at least 0"),
    (lambda: SpeculationConfig(method="medusa"),  # type: ignore[arg-type]
     "method must be one of"),
    (lambda: SpeculationConfig(max_batch_size=0), "max_batch_size must be at least 1"),
    (lambda: SpeculationConfig(acceptance_window_s=0),
     "acceptance_window_s must be greater than 0"),
    (lambda: SpeculationConfig("ngram", 17), r"num_speculative_tokens must be in \[1, 16\]"),
    (lambda: SpeculationConfig("ngram", prompt_lookup_min=5, prompt_lookup_max=4),
     "prompt_lookup_min <= prompt_lookup_max"),
])
def test_a_value_outside_its_declared_rule_is_refused_by_name(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_engine_config_takes_name_and_path_by_position_and_options_by_keyword() -> None:
    config = EngineConfig("m", Path("/m"), 7, max_num_seqs=8)
    assert (config.model_name, config.seed, config.max_num_seqs) == ("m", 7, 8)
    with pytest.raises(ValueError, match="model_name"):
        EngineConfig("", Path("/m"))


def test_serving_copies_every_option_of_the_settings() -> None:
    options = EngineOptions(dtype="bfloat16", max_model_len=4096, max_num_seqs=8,
                            enforce_eager=False, quantization="fp8",
                            gpu_memory_utilization=0.5, tensor_parallel_size=2,
                            speculation=SpeculationConfig("ngram", 3),
                            cpu=CpuConfig(kv_cache_gib=4))
    config = EngineConfig.serving(options, "m", Path("/m"))
    assert (config.model_name, config.model_path, config.seed) == ("m", Path("/m"), 0)
    for option in fields(EngineOptions):
        assert getattr(config, option.name) == getattr(options, option.name), option.name
