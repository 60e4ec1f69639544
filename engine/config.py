"""Engine configuration: what one vLLM engine serves and how.

The one declaration of the engine's settings: ``EngineOptions`` (with ``SpeculationConfig`` and
``CpuConfig``) is what a model's entry in ``configs/models.yaml`` chooses. Field types carry the
rules (``Literal`` choices, ``annotated_types`` bounds), checked here by ``check_fields``, by
pydantic in ``gateway/settings.py`` (whose ``ModelSettings`` extends ``EngineOptions``) and by the
Helm chart's schema generated from it (``gateway/chart_schema.py``). ``EngineConfig`` adds what
the caller decides and is turned into vLLM's ``AsyncEngineArgs`` plus the ``VLLM_CPU_*``
environment the CPU backend reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Interval

from engine.field_rules import check_fields
from engine.speculation_health import HealthPolicy

Dtype = Literal["float32", "bfloat16", "float16", "auto"]
Task = Literal["generate", "embed"]
SpeculationMethod = Literal["none", "ngram", "draft_model", "eagle", "eagle3"]
DraftUnderLoad = Literal["skip", "fill"]
SchedulingPolicy = Literal["fcfs", "priority"]
DRAFT_METHODS = ("draft_model", "eagle", "eagle3")  # speculation from a model in draft_path


@dataclass(frozen=True)
class SpeculationConfig:
    method: SpeculationMethod = "none"
    num_speculative_tokens: Annotated[int, Interval(ge=1, le=16)] = 4
    prompt_lookup_min: Annotated[int, Ge(1)] = 2  # n-gram sizes matched (ngram)
    prompt_lookup_max: Annotated[int, Ge(1)] = 4
    draft_path: Path | None = None  # settings: relative is under model_cache
    # Adaptive: no drafts while more than this many requests share a step (vLLM's
    # dynamic speculative decoding schedule); None speculates at every batch size.
    max_batch_size: Annotated[int, Ge(1)] | None = None
    # Above max_batch_size: "skip" the drafter's forward pass entirely (engine/vllm_plugin.py)
    # or "fill" its KV cache as vLLM does (measured ~7% of throughput at 16 concurrent on a
    # CPU, for a barely higher acceptance once load falls: docs/speculation.md).
    draft_under_load: DraftUnderLoad = "skip"
    # Metering: the draft is "stale" when the acceptance over the last
    # ``acceptance_window_s`` falls below ``acceptance_floor`` (0 disables).
    acceptance_floor: Annotated[float, Interval(ge=0, le=1)] = 0.0
    acceptance_window_s: Annotated[float, Gt(0)] = 300.0

    def __post_init__(self) -> None:
        check_fields(self, SpeculationConfig)
        if self.method == "ngram" and self.prompt_lookup_min > self.prompt_lookup_max:
            raise ValueError("need prompt_lookup_min <= prompt_lookup_max")
        if self.method in DRAFT_METHODS and self.draft_path is None:
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
                and self.method in DRAFT_METHODS)

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
    reserved_cpus: Annotated[int, Ge(0)] = 0
    kv_cache_gib: Annotated[int, Ge(1)] = 2  # VLLM_CPU_KVCACHE_SPACE

    def __post_init__(self) -> None:
        check_fields(self, CpuConfig)

    def environment(self) -> dict[str, str]:
        bind = self.threads_bind
        if bind == "auto":
            bind = ",".join(str(core) for core in sorted(os.sched_getaffinity(0)))
        return {
            "VLLM_CPU_OMP_THREADS_BIND": bind,
            "VLLM_CPU_NUM_OF_RESERVED_CPU": str(self.reserved_cpus),
            "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
        }


@dataclass(frozen=True, kw_only=True)
class EngineOptions:
    """What a model's settings choose about its engine: these names are its YAML keys."""

    task: Task = "generate"  # "embed": a pooling model (vLLM's pooling runner, /v1/embeddings)
    dtype: Dtype = "float32"
    max_model_len: Annotated[int, Ge(16)] = 2048  # context length
    max_num_seqs: Annotated[int, Ge(1)] = 64  # continuous-batching width
    enforce_eager: bool = True
    quantization: str | None = None  # passed to vLLM (compressed-tensors checkpoints need none)
    gpu_memory_utilization: Annotated[float, Interval(gt=0, le=1)] = 0.9
    tensor_parallel_size: Annotated[int, Ge(1)] = 1
    # "priority": requests with a higher priority value (batch lines) wait behind the others
    # (vLLM's --scheduling-policy); "fcfs": priorities are not sent to the engine at all.
    scheduling_policy: SchedulingPolicy = "fcfs"
    speculation: SpeculationConfig = field(default_factory=SpeculationConfig)
    cpu: CpuConfig = field(default_factory=CpuConfig)

    def __post_init__(self) -> None:
        check_fields(self, EngineOptions)

    @property
    def priority_scheduling(self) -> bool:
        """Whether the engine orders requests by priority (else none is sent)."""
        return self.scheduling_policy == "priority"


@dataclass(frozen=True)
class EngineConfig(EngineOptions):
    """One engine: a model's options plus what its caller decides (name, weights, seed).

    ``EngineConfig(name, path, dtype=...)``: the options are keyword-only.
    """

    model_name: str
    model_path: Path
    seed: int = 0
    # vLLM engine flags as `vllm serve` takes them (engine/vllm_args.py), e.g. from the chart's
    # engine.extraArgs; those the options above already set are refused.
    extra_args: tuple[str, ...] = ()
    # Where vLLM and torch keep compiled graphs and kernels (settings: <data_dir>/compile-cache),
    # so a restart of a compiled (enforce_eager false) engine reuses them; None: their defaults.
    compile_cache_dir: Path | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model_name:
            raise ValueError("model_name must not be empty")

    @classmethod
    def serving(cls, options: EngineOptions, model_name: str, model_path: Path,
                compile_cache_dir: Path | None = None) -> EngineConfig:
        """The engine for ``options`` (a subclass, such as the gateway's settings, included)."""
        chosen = {option.name: getattr(options, option.name) for option in fields(EngineOptions)}
        return cls(model_name, model_path, compile_cache_dir=compile_cache_dir, **chosen)

    def unprepared(self) -> str | None:
        """What is missing before vLLM can start: the model's folder or its draft's."""
        if not (self.model_path / "config.json").is_file():
            return f"no model at {self.model_path}; run `llm-gateway models prepare`"
        draft = self.speculation.draft_path
        if draft is not None and not (draft / "config.json").is_file():
            return f"no draft model at {draft}; run `llm-gateway draft install`"
        return None

    def environment(self, *, on_cpu: bool) -> dict[str, str]:
        """Variables vLLM's processes read at start: the CPU backend's (``on_cpu``) and the
        compile caches' roots (vLLM's ``VLLM_CACHE_ROOT`` holds its torch.compile artifacts;
        inductor's and Triton's own caches beside it, as the chart's engine pods lay them out)."""
        env = self.cpu.environment() if on_cpu else {}
        if on_cpu:
            # vLLM CPU 0.32 cannot load the AOT artifacts it saves ("'function' object has no
            # attribute 'finalize_loading'") and recompiles at every start; without them,
            # inductor's own caches serve a restart (bench/results/*-startup-aot-off.md).
            env["VLLM_USE_AOT_COMPILE"] = "0"
        if (root := self.compile_cache_dir) is not None:
            env.update({"VLLM_CACHE_ROOT": str(root / "vllm"),
                        "TORCHINDUCTOR_CACHE_DIR": str(root / "inductor"),
                        "TRITON_CACHE_DIR": str(root / "triton")})
        return env

    def engine_args_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``vllm.engine.arg_utils.AsyncEngineArgs`` (and, as flags,
        for ``vllm serve``: engine/vllm_args.py)."""
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
            "scheduling_policy": self.scheduling_policy,
            "speculative_config": self.speculation.to_vllm(),
            "additional_config": self.speculation.vllm_additional_config(),
            "seed": self.seed,
            "disable_log_stats": False,
            "runner": "pooling" if self.task == "embed" else "generate",
            # a pooling model has no generated tokens to cache; vLLM picks what it supports
            "enable_prefix_caching": True if self.task == "generate" else None,
            "per_request_spec_decode_metrics": (
                "none" if self.speculation.method == "none" else "summary"
            ),
        }
