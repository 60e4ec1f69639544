"""The machine's memory bandwidth and what it allows a decoder.

Decoding one step reads every weight once (tied embeddings count once: the output
projection reads the whole matrix, the input lookup one row). So one stream can make at
most ``bandwidth / bytes_per_step`` tokens per second, whatever the software; a batch of
``c`` streams shares those reads, which makes the same figure the ceiling on decode steps.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_FLOAT_DTYPES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2}
_OTHER_DTYPES = {"I64": 8, "I32": 4, "U32": 4, "I16": 2, "U16": 2, "I8": 1, "U8": 1,
                 "F8_E4M3": 1, "F8_E5M2": 1, "BOOL": 1}
_SERVING_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class Bandwidth:
    """Best of several runs, in GB/s (10^9 bytes); copies count bytes read plus written."""

    numpy_copy_gbs: float
    torch_copy_gbs: float | None
    torch_read_gbs: float | None
    threads: int
    buffer_mb: int

    @property
    def best_gbs(self) -> float:
        values = [v for v in (self.numpy_copy_gbs, self.torch_copy_gbs, self.torch_read_gbs)
                  if v is not None]
        return max(values)


def _best_seconds(action: Callable[[], object], repeats: int) -> float:
    action()  # first touch of the pages
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def measure(buffer_mb: int = 256, repeats: int = 5) -> Bandwidth:
    """numpy copy (one thread), torch copy and torch sum (all threads, read-only)."""
    source = np.ones(buffer_mb * 1024 * 1024 // 4, dtype=np.float32)
    target = np.empty_like(source)
    size = source.nbytes
    numpy_copy = 2 * size / _best_seconds(lambda: np.copyto(target, source), repeats) / 1e9
    torch_copy = torch_read = None
    threads = 1
    try:
        import torch
    except ImportError:
        pass
    else:
        threads = torch.get_num_threads()
        t_source, t_target = torch.from_numpy(source), torch.from_numpy(target)
        torch_copy = 2 * size / _best_seconds(lambda: t_target.copy_(t_source), repeats) / 1e9
        torch_read = size / _best_seconds(lambda: t_source.sum(), repeats) / 1e9
    return Bandwidth(
        numpy_copy_gbs=round(numpy_copy, 2),
        torch_copy_gbs=None if torch_copy is None else round(torch_copy, 2),
        torch_read_gbs=None if torch_read is None else round(torch_read, 2),
        threads=threads, buffer_mb=buffer_mb,
    )


def _safetensors_header(path: Path) -> dict[str, dict[str, object]]:
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header: dict[str, dict[str, object]] = json.loads(handle.read(length))
    header.pop("__metadata__", None)
    return header


def bytes_per_step(model_dir: Path, serving_dtype: str) -> int:
    """Weight bytes read per decode step: float tensors at the serving dtype, others as stored."""
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .safetensors files in {model_dir}")
    float_bytes = _SERVING_BYTES.get(serving_dtype)
    total = 0
    for path in files:
        for tensor in _safetensors_header(path).values():
            dtype = str(tensor["dtype"])
            shape = tensor["shape"]
            assert isinstance(shape, list)
            count = int(np.prod(shape)) if shape else 1
            if dtype in _FLOAT_DTYPES:
                total += count * (float_bytes or _FLOAT_DTYPES[dtype])
            else:
                total += count * _OTHER_DTYPES.get(dtype, 1)
    return total


def ceiling_tok_s(bandwidth_gbs: float, step_bytes: int) -> float:
    """Tokens per second one stream could reach if decoding only waited on memory."""
    return bandwidth_gbs * 1e9 / step_bytes
