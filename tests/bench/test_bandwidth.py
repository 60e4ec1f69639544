from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from bench.bandwidth import bytes_per_step, ceiling_tok_s, measure


def _write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], int]]) -> None:
    header, offset = {}, 0
    for name, (dtype, shape, size) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)


def test_bytes_per_step_counts_floats_at_the_serving_dtype(tmp_path: Path) -> None:
    _write_safetensors(tmp_path / "model.safetensors", {
        "w": ("F32", [4, 4], 64), "q": ("I8", [8], 8), "s": ("BF16", [2], 4),
    })
    assert bytes_per_step(tmp_path, "float32") == 16 * 4 + 8 + 2 * 4
    assert bytes_per_step(tmp_path, "bfloat16") == 16 * 2 + 8 + 2 * 2


def test_bytes_per_step_when_no_weights_then_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        bytes_per_step(tmp_path, "float32")


def test_ceiling_is_bandwidth_over_bytes_per_step() -> None:
    assert ceiling_tok_s(10.0, 500_000_000) == pytest.approx(20.0)


def test_measure_reports_every_method_and_picks_the_best() -> None:
    result = measure(buffer_mb=8, repeats=2)
    assert result.numpy_copy_gbs > 0
    assert result.torch_copy_gbs is not None and result.torch_read_gbs is not None
    assert result.best_gbs == max(result.numpy_copy_gbs, result.torch_copy_gbs,
                                  result.torch_read_gbs)
