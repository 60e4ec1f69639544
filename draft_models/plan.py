"""What a ``draft train`` build is: its plan, and the recipe each kind of draft follows.

``BuildPlan`` says what to build (the kind, the target, sizes, steps); a kind's ``Recipe``
says how: ``start`` loads the target and readies an objective for the one training loop
(``draft_models/train.py``), ``ship`` writes the trained tensors and re-measures them as
shipped, ``architecture`` is its card's section, and ``materialize`` turns a shipped draft
into a folder vLLM loads (``draft install``). The recipes are in ``draft_models/recipes.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from draft_models.acceptance import AcceptanceReport
from draft_models.datagen import Sample, read_samples
from draft_models.kinds import DRAFT_MODEL, KINDS, DraftKind
from draft_models.train import Objective


class Reporter(Protocol):
    def stage(self, name: str, total: int) -> None: ...

    def advance(self, done: int, total: int, info: str = "") -> None: ...


@dataclass(frozen=True)
class BuildPlan:
    target_name: str
    target_dir: Path
    work_dir: Path
    out_dir: Path
    num_layers: int = 2  # draft_model: decoder layers in the draft
    steps: int = 1200
    prompts: int = 1536
    held_out: int = 64
    max_tokens: int = 256
    ledger_file: Path | None = None
    self_prompts: int = 0  # prompts the target writes itself (draft_models/self_prompts.py)
    init_head: Path | None = None  # fine-tune this shipped head instead of a new one
    seed: int = 0
    eval_every: int = 50
    eval_samples: int = 24  # held-out answers scored during training (all of them at the end)
    lr: float = 1e-3
    batch_tokens: int = 2048
    kind: DraftKind = DRAFT_MODEL
    k: int = 2  # heads: drafting steps trained together and measured
    draft_vocab: int = 8192  # EAGLE-3: the target's most written tokens the head drafts

    def __post_init__(self) -> None:
        if self.num_layers < 1 or self.prompts < 1 or self.held_out < 1:
            raise ValueError("num_layers, prompts and held_out must be >= 1")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(k.name for k in KINDS)}")
        if self.k < 1 or self.self_prompts < 0:
            raise ValueError("k must be >= 1 and self_prompts >= 0")
        if self.init_head is not None and not self.kind.fine_tunes:
            able = ", ".join(k.name for k in KINDS if k.fine_tunes)
            raise ValueError(f"init_head fine-tunes a shipped head: kind must be {able}, "
                             f"not {self.kind.name}")

    @classmethod
    def smoke(cls, target_name: str, target_dir: Path, work_dir: Path, out_dir: Path,
              kind: DraftKind = DRAFT_MODEL) -> BuildPlan:
        """Minutes, not hours: for CI and for trying the pipeline."""
        return cls(target_name, target_dir, work_dir, out_dir, num_layers=1, steps=4,
                   prompts=8, held_out=4, max_tokens=16, eval_every=2, eval_samples=4,
                   batch_tokens=256, kind=kind)


@dataclass(frozen=True)
class Distilled:
    """The target's answers a build trains on and holds out."""

    train: list[Sample]
    heldout: list[Sample]

    def __post_init__(self) -> None:
        if not self.train or not self.heldout:
            raise ValueError("no distillation data: run the data stage first")

    @classmethod
    def read(cls, work_dir: Path) -> Distilled:
        return cls(list(read_samples(work_dir / "train")),
                   list(read_samples(work_dir / "heldout")))


@dataclass(frozen=True)
class Training:
    """What a recipe hands the training loop."""

    objective: Objective
    checkpoint: str  # file name in the work folder
    k: int  # draft tokens per step, as acceptance is measured
    stage: str  # the progress display's name for it

    def __post_init__(self) -> None:
        if self.k < 1 or "/" in self.checkpoint or not self.checkpoint.endswith(".pt"):
            raise ValueError("k >= 1 and checkpoint a .pt file name")


@dataclass(frozen=True)
class Recipe:
    """How one kind of draft is trained, shipped and installed."""

    kind: DraftKind
    start: Callable[[BuildPlan, Reporter, Distilled], Training]
    # (plan, trained model, held-out answers, k) -> shipped tensors, acceptance as shipped
    ship: Callable[[BuildPlan, torch.nn.Module, list[Sample], int], tuple[Path, AcceptanceReport]]
    architecture: Callable[[BuildPlan, torch.nn.Module], dict[str, Any]]  # the card's section
    # (shipped folder, its card, target folder, destination)
    materialize: Callable[[Path, Mapping[str, Any], Path, Path], None]
    loss: str  # the card's description of the loss; a format of ``k``
    measured: str  # how the card's acceptance was measured

    def __post_init__(self) -> None:
        if not self.loss or not self.measured:
            raise ValueError(f"{self.kind.name}: describe the loss and the measurement")
