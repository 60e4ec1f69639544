"""What each quantization method does, as data: the scheme, the algorithm, the calibration size.

Plain Python (no torch, no llmcompressor) so the gateway can describe and fingerprint a
recipe; ``worker`` turns it into llmcompressor modifiers inside ``.venv-quant``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal

Method = Literal["w8a8-int8", "w4a16-awq"]
METHODS: tuple[Method, ...] = ("w8a8-int8", "w4a16-awq")
RECIPE_VERSION = 1


@dataclass(frozen=True)
class QuantRecipe:
    """One reproducible quantization: algorithm, scheme and calibration set size."""

    method: Method
    algorithm: str  # human-readable: "SmoothQuant + GPTQ", "AWQ"
    weight_bits: int
    activation_bits: int | None  # None: weight-only, activations stay in the serving dtype
    group_size: int | None  # None: one scale per output channel
    symmetric: bool
    calibration_samples: int
    max_seq_length: int
    smoothing_strength: float | None = None  # SmoothQuant alpha
    awq_grid: int | None = None  # AWQ scale-search grid points
    seed: int = 0
    serving_dtype: str = "float32"  # vLLM activation dtype that this scheme needs on CPU

    def __post_init__(self) -> None:
        if self.weight_bits not in (4, 8):
            raise ValueError("weight_bits must be 4 or 8")
        if self.calibration_samples < 1 or self.max_seq_length < 16:
            raise ValueError("need at least one calibration sample of >= 16 tokens")
        if self.group_size is not None and self.group_size < 16:
            raise ValueError("group_size must be at least 16")

    def scaled(self, calibration_samples: int) -> QuantRecipe:
        """The same recipe with a different calibration set size (CI-sized runs)."""
        data = asdict(self) | {"calibration_samples": calibration_samples}
        return QuantRecipe(**data)

    def as_dict(self) -> dict[str, object]:
        return {"recipe_version": RECIPE_VERSION, **asdict(self)}

    def fingerprint(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def recipe_for(method: str) -> QuantRecipe:
    """The shipped recipe for ``method``; unknown names raise ``ValueError``."""
    if method == "w8a8-int8":
        # INT8 weights (per channel) and INT8 activations (dynamic, per token). SmoothQuant
        # moves activation outliers into the weights first; GPTQ then rounds with error feedback.
        return QuantRecipe(
            method="w8a8-int8", algorithm="SmoothQuant + GPTQ", weight_bits=8,
            activation_bits=8, group_size=None, symmetric=True, calibration_samples=64,
            max_seq_length=512, smoothing_strength=0.8,
        )
    if method == "w4a16-awq":
        # 4-bit weights in groups of 64 (128 does not divide this model's 576 columns),
        # asymmetric; AWQ searches per-channel scales that protect salient weights. Its grid
        # search dominates the run time (~12 min on 2 cores for 64 chats x 20 points), so
        # it calibrates on 16 chats x 10 points.
        return QuantRecipe(
            method="w4a16-awq", algorithm="AWQ", weight_bits=4, activation_bits=None,
            group_size=64, symmetric=False, calibration_samples=16, max_seq_length=512,
            awq_grid=10, serving_dtype="bfloat16",
        )
    raise ValueError(f"unknown quantization method {method!r}; choose from {', '.join(METHODS)}")
