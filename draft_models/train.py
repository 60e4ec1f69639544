"""The one training loop for every draft kind (torch on CPU), parameterised by an objective.

An ``Objective`` is what differs between kinds: the model, which of its parameters train,
the loss on a batch of the target's answers and how held-out acceptance is measured
(``draft_model_train.py``, ``eagle_train.py``, ``eagle3_train.py``). The loop owns the
rest: batches in a seeded order fixed by the step number, AdamW with warm-up then cosine,
gradient clipping, held-out acceptance every ``eval_every`` steps, the best weights so far
(by the objective's ``Selection``) and a checkpoint (weights, optimiser, RNG, history)
from which a resumed run continues bit for bit.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from draft_models.acceptance import AcceptanceReport
from draft_models.datagen import Sample

ProgressFn = Callable[[int, int, dict[str, float]], None]
Weights = dict[str, torch.Tensor]


@dataclass(frozen=True)
class TrainPlan:
    checkpoint: Path
    steps: int = 1200
    batch_tokens: int = 2048
    lr: float = 3e-4
    warmup: int = 20
    seed: int = 0
    k: int = 4  # draft tokens per step, as acceptance is measured
    eval_every: int = 100
    checkpoint_every: int = 25
    patience: int = 2  # evaluations without improvement before a plateau ends the run
    threads: int = 2

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_tokens < 64 or self.eval_every < 1:
            raise ValueError("steps >= 1, batch_tokens >= 64, eval_every >= 1")


@dataclass
class TrainResult:
    steps: int
    best_step: int
    best: AcceptanceReport
    history: list[dict[str, float]] = field(default_factory=list)
    wall_s: float = 0.0
    stopped_early: bool = False


@dataclass(frozen=True)
class Selection:
    """Which evaluation's weights a run keeps, and whether a plateau ends it."""

    improves: Callable[[AcceptanceReport, AcceptanceReport], bool]  # (new, best so far)
    stops_on_plateau: bool


def _gains_half_a_point(report: AcceptanceReport, best: AcceptanceReport) -> bool:
    return report.rate > best.rate + 0.005


def _no_shorter(report: AcceptanceReport, best: AcceptanceReport) -> bool:
    return report.mean_accepted_length >= best.mean_accepted_length


BY_RATE = Selection(_gains_half_a_point, stops_on_plateau=True)
BY_LENGTH = Selection(_no_shorter, stops_on_plateau=False)


class Objective(Protocol):
    """What one kind of draft trains and how its drafts are scored."""

    @property
    def model(self) -> torch.nn.Module: ...

    @property
    def selection(self) -> Selection: ...

    def parameters(self) -> list[torch.nn.Parameter]:
        """The parameters that train (anything shared with the target is frozen)."""
        ...

    def loss(self, batch: list[Sample]) -> torch.Tensor: ...

    def acceptance(self, samples: list[Sample], k: int) -> AcceptanceReport: ...

    def weights(self) -> Weights:
        """What a checkpoint and the best weights keep."""
        ...

    def load(self, weights: Weights) -> None: ...


def make_batches(
    samples: list[Sample], batch_tokens: int, seed: int, epoch: int
) -> list[list[int]]:
    """Indices grouped by similar length (little padding), then shuffled per epoch."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = sorted(range(len(samples)), key=lambda i: (_length(samples[i]), rng.random()))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        longest = max([_length(samples[j]) for j in current] + [_length(samples[i])])
        if current and longest * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def _length(sample: Sample) -> int:
    return len(sample.prompt_ids) + len(sample.output_ids)


def batch_for_step(samples: list[Sample], plan: TrainPlan, step: int) -> list[Sample]:
    epoch, index = 0, step
    while True:
        batches = make_batches(samples, plan.batch_tokens, plan.seed, epoch)
        if index < len(batches):
            return [samples[i] for i in batches[index]]
        index -= len(batches)
        epoch += 1


def lr_at(plan: TrainPlan, step: int) -> float:
    if step < plan.warmup:
        return plan.lr * (step + 1) / plan.warmup
    progress = (step - plan.warmup) / max(1, plan.steps - plan.warmup)
    return plan.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# A checkpoint written before the loops were merged names its weights by kind.
_LEGACY_KEYS = {"tensors": "weights", "head": "weights", "best_tensors": "best",
                "best_state": "best"}


class Trainer:
    """Owns the objective's optimiser and the checkpoint file; ``run`` trains to the plan."""

    def __init__(self, objective: Objective, plan: TrainPlan) -> None:
        torch.manual_seed(plan.seed)
        torch.set_num_threads(plan.threads)
        self.objective, self.plan = objective, plan
        self.params = objective.parameters()
        self.optimizer = torch.optim.AdamW(self.params, lr=plan.lr, weight_decay=0.0)
        self.step = 0
        self.result = TrainResult(0, 0, AcceptanceReport(plan.k))
        self.best: Weights = {}
        self._stale_evals = 0

    def run(self, train: list[Sample], heldout: list[Sample], progress: ProgressFn) -> TrainResult:
        plan = self.plan
        self._resume()
        started = time.monotonic() - self.result.wall_s
        self.objective.model.train()
        while self.step < plan.steps and not self.result.stopped_early:
            loss = self._train_step(batch_for_step(train, plan, self.step))
            self.step += 1
            metrics = {"loss": loss}
            if self.step % plan.eval_every == 0 or self.step == plan.steps:
                metrics.update(self._evaluate(heldout))
            self.result.wall_s = time.monotonic() - started
            if self.step % plan.checkpoint_every == 0 or "acceptance" in metrics:
                self._save()
            progress(self.step, plan.steps, metrics)
        self.result.steps = self.step
        self._save()
        return self.result

    def restore_best(self) -> None:
        """Load the best weights seen (by the objective's selection) into the model."""
        if self.best:
            self.objective.load(self.best)

    def _train_step(self, batch: list[Sample]) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.plan, self.step)
        loss = self.objective.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        return float(loss.detach())

    def _evaluate(self, heldout: list[Sample]) -> dict[str, float]:
        report = self.objective.acceptance(heldout, self.plan.k)
        entry = {"step": float(self.step), "acceptance": report.rate,
                 "mean_accepted_length": report.mean_accepted_length}
        self.result.history.append(entry)
        selection = self.objective.selection
        if selection.improves(report, self.result.best) or not self.best:
            self.result.best, self.result.best_step = report, self.step
            self.best = {k: v.clone() for k, v in self.objective.weights().items()}
            self._stale_evals = 0
        else:
            self._stale_evals += 1
            self.result.stopped_early = (selection.stops_on_plateau
                                         and self._stale_evals >= self.plan.patience)
        return entry

    def _save(self) -> None:
        state = {"step": self.step, "weights": self.objective.weights(),
                 "optimizer": self.optimizer.state_dict(), "result": self.result,
                 "best": self.best, "stale_evals": self._stale_evals,
                 "rng": torch.get_rng_state()}
        partial = self.plan.checkpoint.with_suffix(".partial")
        partial.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, partial)
        partial.rename(self.plan.checkpoint)

    def _resume(self) -> None:
        if not self.plan.checkpoint.is_file():
            return
        stored: dict[str, Any] = torch.load(self.plan.checkpoint, weights_only=False)
        state = {_LEGACY_KEYS.get(key, key): value for key, value in stored.items()}
        self.objective.load(state["weights"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.result = int(state["step"]), state["result"]
        self.best = state["best"]
        self._stale_evals = int(state.get("stale_evals", 0))
        torch.set_rng_state(state["rng"])
