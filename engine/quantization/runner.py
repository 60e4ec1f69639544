"""Run the quantization worker in ``.venv-quant`` from the gateway's environment.

The worker is a subprocess because llmcompressor and vLLM need different transformers
releases. Its JSON progress lines are handed to a callback; its log goes to ``<output>.log``.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import QuantizationError
from engine.quantization import events
from engine.quantization.recipes import QuantRecipe
from engine.quantization.worker import MARKER

REPO = Path(__file__).resolve().parents[2]
DEFAULT_QUANT_PYTHON = REPO / ".venv-quant" / "bin" / "python"
OnProgress = Callable[[events.Progress], None]


@dataclass(frozen=True)
class QuantJob:
    """Quantize ``source`` (float32 HF folder) with ``recipe`` into ``output``."""

    source: Path
    recipe: QuantRecipe
    output: Path

    def recorded(self) -> dict[str, Any] | None:
        """The record of a finished run of this very recipe from this source, if any."""
        marker = self.output / MARKER
        if not marker.is_file():
            return None
        record: dict[str, Any] = json.loads(marker.read_text())
        same = record.get("fingerprint") == self.recipe.fingerprint()
        return record if same and record.get("source_model") == str(self.source) else None

    def command(self, python: Path) -> list[str]:
        return [str(python), "-m", "engine.quantization.worker", "--model", str(self.source),
                "--method", self.recipe.method, "--output", str(self.output),
                "--samples", str(self.recipe.calibration_samples)]


def run(job: QuantJob, on_progress: OnProgress, python: Path = DEFAULT_QUANT_PYTHON,
        niceness: int = 10) -> dict[str, Any]:
    """Run the worker to completion; returns its record or raises ``QuantizationError``."""
    if not python.is_file():
        raise QuantizationError(
            f"no quantization environment at {python.parent.parent}; run scripts/quant-env.sh")
    if not (job.source / "config.json").is_file():
        raise QuantizationError(f"no model at {job.source}; run `llm-gateway models prepare`")
    job.output.parent.mkdir(parents=True, exist_ok=True)
    log_path = job.output.with_name(job.output.name + ".log")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    record: dict[str, Any] | None = None
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            job.command(python), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log,
            text=True, preexec_fn=(lambda: os.nice(niceness)) if niceness else None)
        assert process.stdout is not None
        for line in process.stdout:
            parsed = events.parse(line)
            if isinstance(parsed, events.Progress):
                on_progress(parsed)
            elif parsed is not None:
                record = parsed
        code = process.wait()
    if code != 0 or record is None:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
        raise QuantizationError(f"quantization worker exited with {code}; log {log_path}:\n{tail}")
    return record
