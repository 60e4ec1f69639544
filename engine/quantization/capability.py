"""Can this machine run a quantized model? Checked before vLLM starts, with a clear message.

``scheme_of`` reads the checkpoint's ``quantization_config`` (or the explicit ``quantization``
setting); ``detect_hardware`` probes the CPU flags and the CUDA compute capability; ``check``
raises ``UnsupportedQuantizationError`` when the pair cannot work.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engine.config import EngineConfig
from engine.errors import UnsupportedQuantizationError

Scheme = Literal["none", "w8a8-int8", "w4a16", "fp8"]

# Minimum CUDA compute capability per scheme (vLLM's kernels): INT8 GEMM from Turing,
# 4-bit Marlin from Ampere, native FP8 from Ada (8.9) / Hopper (9.0).
_CUDA_MIN: dict[Scheme, tuple[int, int]] = {
    "w8a8-int8": (7, 5),
    "w4a16": (8, 0),
    "fp8": (8, 9),
}


@dataclass(frozen=True)
class Hardware:
    """What the checks need to know about the machine."""

    cpu_flags: frozenset[str]
    cuda_capability: tuple[int, int] | None  # None: no CUDA device

    @property
    def has_amx(self) -> bool:
        return "amx_tile" in self.cpu_flags

    def describe(self) -> str:
        if self.cuda_capability is not None:
            major, minor = self.cuda_capability
            return f"CUDA GPU with compute capability {major}.{minor}"
        isa = "AMX" if self.has_amx else "AVX512" if "avx512f" in self.cpu_flags else "no AVX512"
        return f"CPU ({isa})"


def _cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def detect_hardware() -> Hardware:
    import torch

    capability = None
    if torch.cuda.is_available():
        capability = tuple(torch.cuda.get_device_capability(0))
    return Hardware(_cpu_flags(), capability)  # type: ignore[arg-type]


def _scheme_from_config(config: dict[str, Any]) -> Scheme:
    method = str(config.get("quant_method", "")).lower()
    if method in ("awq", "gptq"):
        return "w4a16"
    if method == "fp8":
        return "fp8"
    groups = config.get("config_groups") or {}
    for group in groups.values():
        weights = group.get("weights") or {}
        if weights.get("type") == "float" and weights.get("num_bits") == 8:
            return "fp8"
        if weights.get("num_bits") == 4:
            return "w4a16"
        if weights.get("num_bits") == 8 and group.get("input_activations"):
            return "w8a8-int8"
    raise UnsupportedQuantizationError(f"unrecognised quantization_config: {config}")


def scheme_of(model_path: Path, quantization: str | None = None) -> Scheme:
    """The scheme a model will run with: the explicit setting first, then its config.json."""
    if quantization is not None:
        return _scheme_from_config({"quant_method": quantization})
    config_file = model_path / "config.json"
    if not config_file.is_file():
        return "none"
    config = json.loads(config_file.read_text()).get("quantization_config")
    return "none" if config is None else _scheme_from_config(config)


def check(scheme: Scheme, dtype: str, hardware: Hardware) -> None:
    """Raise ``UnsupportedQuantizationError`` when ``hardware`` cannot serve ``scheme``."""
    if scheme == "none":
        return
    if hardware.cuda_capability is not None:
        if hardware.cuda_capability < _CUDA_MIN[scheme]:
            need = ".".join(map(str, _CUDA_MIN[scheme]))
            raise UnsupportedQuantizationError(
                f"{scheme} needs a CUDA GPU with compute capability >= {need}"
                f"{' (Ada or Hopper)' if scheme == 'fp8' else ''}; this is a "
                f"{hardware.describe()}"
            )
        return
    _check_cpu(scheme, dtype, hardware)


def _check_cpu(scheme: Scheme, dtype: str, hardware: Hardware) -> None:
    if scheme == "fp8" and not hardware.has_amx:
        raise UnsupportedQuantizationError(
            f"fp8 on CPU needs AMX (Sapphire Rapids or newer) or a CUDA GPU of the Ada or "
            f"Hopper generation; this is a {hardware.describe()}. Serve the w8a8-int8 or "
            f"w4a16 variant instead"
        )
    if scheme == "w4a16" and "avx512f" not in hardware.cpu_flags:
        # vLLM's CPU wheel compiles cpu_gemm_wna16 only into its AVX512 build: on an AVX2
        # CPU the first forward fails with "no attribute 'cpu_gemm_wna16'" (seen on an
        # AMD EPYC). INT8 (oneDNN) runs there, in float32.
        raise UnsupportedQuantizationError(
            f"w4a16 on CPU needs AVX512 (vLLM's 4-bit CPU kernel is built only for it); this "
            f"is a {hardware.describe()}. Serve the w8a8-int8 variant instead"
        )
    if scheme == "w4a16" and dtype != "bfloat16":
        raise UnsupportedQuantizationError(
            f"w4a16 on CPU needs dtype bfloat16 (vLLM's 4-bit CPU kernel has no {dtype} "
            f"path); set dtype: bfloat16 for this model"
        )


def servable(scheme: Scheme, dtype: str, hardware: Hardware) -> str | None:
    """``None`` when vLLM can serve ``scheme`` here, else the reason it cannot."""
    try:
        check(scheme, dtype, hardware)
    except UnsupportedQuantizationError as exc:
        return str(exc)
    return None


def require_supported(config: EngineConfig, hardware: Hardware | None = None) -> None:
    """The start-up gate: raise when this machine cannot serve ``config``'s quantization."""
    scheme = scheme_of(config.model_path, config.quantization)
    if scheme == "none":
        return
    try:
        check(scheme, config.dtype, hardware or detect_hardware())
    except UnsupportedQuantizationError as exc:
        raise UnsupportedQuantizationError(f"model {config.model_name!r}: {exc}") from None


def serving_dtype(scheme: Scheme, dtype: str, hardware: Hardware) -> str:
    """The dtype ``scheme`` must run with on ``hardware``.

    On CPUs with AMX, vLLM's INT8 kernel (``int8_scaled_mm_with_quant``) takes bfloat16 or
    half activations only (float32 kills the engine at the first request); elsewhere the
    oneDNN path runs float32. Measured here: W8A8 at bfloat16 on AMX keeps perplexity
    within 1.5% of float32 (bench/results/*-quantization.md).
    """
    amx_int8 = hardware.cuda_capability is None and hardware.has_amx
    if scheme == "w8a8-int8" and amx_int8 and dtype == "float32":
        return "bfloat16"
    return dtype


def adapt_to_hardware(config: EngineConfig, hardware: Hardware | None = None) -> EngineConfig:
    """``config`` with the dtype this machine can serve its quantization with."""
    scheme = scheme_of(config.model_path, config.quantization)
    dtype = serving_dtype(scheme, config.dtype, hardware or detect_hardware())
    if dtype == config.dtype:
        return config
    return dataclasses.replace(config, dtype="bfloat16")  # the one change serving_dtype makes
