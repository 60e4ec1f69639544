"""Engine configuration: what one vLLM engine serves and how.

``EngineConfig`` is built from the settings (``configs/models.yaml``) and turned into
vLLM's ``AsyncEngineArgs`` plus the ``VLLM_CPU_*`` environment the CPU backend reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.speculation_health import HealthPolicy

Dtype = Literal["float32", "bfloat16", "float16", "auto"]
SpeculationMethod = Literal["none", "ngram", "draft_model", "eagle", "eagle3"]
DraftUnderLoad = Literal["skip", "fill"]


@dataclass(frozen=True)
class SpeculationConfig:
    method: SpeculationMethod = "none"
    num_speculative_tokens: int = 4
    prompt_lookup_min: int = 2
    prompt_lookup_max: int = 4
    draft_path: Path | None = None
    # Adaptive: no drafts while more than this many requests share a step (vLLM's
    # dynamic speculative decoding schedule); None speculates at every batch size.
    max_batch_size: int | None = None
    # Above max_batch_size: "skip" the drafter's forward pass entirely (engine/vllm_plugin.py)
    # or "fill" its KV cache as vLLM does (measured ~7% of throughput at 16 concurrent on a
    # CPU, for a barely higher acceptance once load falls: docs/speculation.md).
    draft_under_load: DraftUnderLoad = "skip"
    # Metering: the draft is "stale" when the acceptance over the last
    # ``acceptance_window_s`` falls below ``acceptance_floor`` (0 disables).
    acceptance_floor: float = 0.0
    acceptance_window_s: float = 300.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.acceptance_floor <= 1.0:
            raise ValueError("acceptance_floor must be in [0, 1]")
        if self.acceptance_window_s <= 0:
            raise ValueError("acceptance_window_s must be positive")
        if self.max_batch_size is not None and self.max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if self.draft_under_load not in ("skip", "fill"):
            raise ValueError("draft_under_load must be 'skip' or 'fill'")
        if self.method == "none":
            return
        if not 1 <= self.num_speculative_tokens <= 16:
            raise ValueError("num_speculative_tokens must be in [1, 16]")
        if self.method == "ngram" and not 1 <= self.prompt_lookup_min <= self.prompt_lookup_max:
            raise ValueError("need 1 <= prompt_lookup_min <= prompt_lookup_max")
        if self.method in ("draft_model", "eagle", "eagle3") and self.draft_path is None:
            raise ValueError(f"speculation method {self.method!r} needs draft_path")

    def to_vllm(self) -> dict[str, Any] | None:
        if self.method == "none":
            return None
        out: dict[str, Any] = {
            "method": self.method,
            "num_speculative_tokens": self.num_speculative_tokens,
        }
        if self.method == "ngram":
            out["prompt_lookup_min"] = self.prompt_lookup_min
            out["prompt_lookup_max"] = self.prompt_lookup_max
        else:
            out["model"] = str(self.draft_path)
        if self.max_batch_size is not None:
            # Inclusive batch-size ranges; vLLM carries the last value to max_num_seqs.
            k, limit = self.num_speculative_tokens, self.max_batch_size
            schedule = [[1, limit, k], [limit + 1, limit + 1, 0]]
            out["num_speculative_tokens_per_batch_size"] = schedule
        return out

    @property
    def skips_idle_drafts(self) -> bool:
        """Whether steps scheduled with no drafts skip the drafter (a model drafter only)."""
        return (self.max_batch_size is not None and self.draft_under_load == "skip"
                and self.method in ("draft_model", "eagle", "eagle3"))

    def vllm_additional_config(self) -> dict[str, Any]:
        """What engine/vllm_plugin.py reads inside vLLM's processes."""
        if not self.skips_idle_drafts:
            return {}
        return {"llm_gateway": {"draft_under_load": "skip"}}

    def health_policy(self) -> HealthPolicy:
        return HealthPolicy(floor=self.acceptance_floor, window_s=self.acceptance_window_s,
                            bucket_s=min(10.0, self.acceptance_window_s))


@dataclass(frozen=True)
class CpuConfig:
    """vLLM CPU backend knobs (ignored on CUDA)."""

    threads_bind: str = "auto"  # "auto": every core this process may use
    reserved_cpus: int = 0
    kv_cache_gib: int = 2

    def __post_init__(self) -> None:
        if self.kv_cache_gib <= 0:
            raise ValueError("kv_cache_gib must be positive")
        if self.reserved_cpus < 0:
            raise ValueError("reserved_cpus must be >= 0")

    def environment(self) -> dict[str, str]:
        bind = self.threads_bind
        if bind == "auto":
            bind = ",".join(str(core) for core in sorted(os.sched_getaffinity(0)))
        return {
            "VLLM_CPU_OMP_THREADS_BIND": bind,
            "VLLM_CPU_NUM_OF_RESERVED_CPU": str(self.reserved_cpus),
            "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
        }


@dataclass(frozen=True)
class EngineConfig:
    model_name: str
    model_path: Path
    dtype: Dtype = "float32"
    max_model_len: int = 2048
    max_num_seqs: int = 64
    enforce_eager: bool = True
    quantization: str | None = None
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    speculation: SpeculationConfig = field(default_factory=SpeculationConfig)
    cpu: CpuConfig = field(default_factory=CpuConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.model_name:
            raise ValueError("model_name must not be empty")
        if self.max_model_len < 16:
            raise ValueError("max_model_len must be at least 16")
        if self.max_num_seqs < 1:
            raise ValueError("max_num_seqs must be at least 1")
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")

    def engine_args_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``vllm.engine.arg_utils.AsyncEngineArgs``."""
        return {
            "model": str(self.model_path),
            "served_model_name": [self.model_name],
            "dtype": self.dtype,
            "max_model_len": self.max_model_len,
            "max_num_seqs": self.max_num_seqs,
            "enforce_eager": self.enforce_eager,
            "quantization": self.quantization,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "tensor_parallel_size": self.tensor_parallel_size,
            "speculative_config": self.speculation.to_vllm(),
            "additional_config": self.speculation.vllm_additional_config(),
            "seed": self.seed,
            "disable_log_stats": False,
            "enable_prefix_caching": True,
            "per_request_spec_decode_metrics": (
                "none" if self.speculation.method == "none" else "summary"
            ),
        }
