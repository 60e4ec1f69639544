"""Distillation training of a draft on the target's greedy answers (torch on CPU).

Loss on every answer position: cross-entropy on the target's greedy token plus a
soft cross-entropy on its renormalised top-k probabilities. Only the draft's layers
and final norm train; embeddings and the tied head stay the target's. Batches follow a
seeded order fixed by the step number, so a run resumed from its checkpoint continues
exactly where it stopped. Held-out acceptance is measured every ``eval_every`` steps;
training stops early when it plateaus and keeps the best tensors.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from draft_models.acceptance import AcceptanceReport
from draft_models.datagen import Sample
from draft_models.evaluate import acceptance

ProgressFn = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class TrainPlan:
    checkpoint: Path
    steps: int = 1200
    batch_tokens: int = 2048
    lr: float = 3e-4
    warmup: int = 20
    soft_weight: float = 0.5
    seed: int = 0
    k: int = 4
    eval_every: int = 100
    checkpoint_every: int = 25
    patience: int = 2  # evaluations without a 0.5-point gain before stopping
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


@dataclass(frozen=True)
class VocabSubset:
    """The tokens the training loss normalises over: every token the target said or
    ranked in its top-k. The full head costs ~6x more per position on a 49k vocabulary;
    acceptance is always measured with the full head."""

    ids: Any  # sorted LongTensor of vocabulary ids
    index: Any  # LongTensor: vocabulary id -> position in ``ids`` (-1 outside)

    @classmethod
    def from_samples(cls, samples: list[Sample], vocab_size: int) -> VocabSubset:
        import torch

        seen = {t for s in samples for t in s.output_ids}
        seen.update(t for s in samples for row in s.top_ids for t in row)
        ids = torch.tensor(sorted(seen), dtype=torch.long)
        index = torch.full((vocab_size,), -1, dtype=torch.long)
        index[ids] = torch.arange(len(ids))
        return cls(ids, index)


@dataclass
class _Targets:
    rows: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    top_ids: list[list[int]] = field(default_factory=list)
    top_lps: list[list[float]] = field(default_factory=list)


def _batch_tensors(batch: list[Sample], pad_id: int) -> tuple[Any, Any, _Targets]:
    import torch

    width = max(_length(s) for s in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    out = _Targets()
    for r, s in enumerate(batch):
        seq = list(s.prompt_ids) + list(s.output_ids)
        ids[r, :len(seq)] = torch.tensor(seq)
        mask[r, :len(seq)] = 1
        start = len(s.prompt_ids) - 1
        out.rows.extend([r] * len(s.output_ids))
        out.cols.extend(range(start, start + len(s.output_ids)))
        out.labels.extend(s.output_ids)
        out.top_ids.extend(list(row) for row in s.top_ids)
        out.top_lps.extend(list(row) for row in s.top_logprobs)
    return ids, mask, out


def loss_on(draft: Any, batch: list[Sample], soft_weight: float, pad_id: int,
            subset: VocabSubset | None = None) -> Any:
    """Hard CE on the greedy token + ``soft_weight`` x soft CE on the target's top-k."""
    import torch
    import torch.nn.functional as F

    ids, mask, t = _batch_tensors(batch, pad_id)
    hidden = draft.model(input_ids=ids, attention_mask=mask).last_hidden_state
    picked = hidden[torch.tensor(t.rows), torch.tensor(t.cols)]
    labels = torch.tensor(t.labels)
    if subset is None:
        logits = draft.lm_head(picked)
    else:
        logits = picked @ draft.lm_head.weight[subset.ids].T
        labels = subset.index[labels]
    logp = F.log_softmax(logits, dim=-1)
    hard = F.nll_loss(logp, labels)
    usable = soft_weight > 0 and len(t.top_ids) == len(t.labels) and t.top_ids and t.top_ids[0]
    if not usable:
        return hard
    k = min(len(row) for row in t.top_ids)
    top = torch.tensor([row[:k] for row in t.top_ids])
    if subset is not None:
        top = subset.index[top]
    probs = torch.softmax(torch.tensor([row[:k] for row in t.top_lps]), dim=-1)
    soft = -(probs * logp.gather(1, top)).sum(dim=-1).mean()
    return hard + soft_weight * soft


def lr_at(plan: TrainPlan, step: int) -> float:
    if step < plan.warmup:
        return plan.lr * (step + 1) / plan.warmup
    import math

    progress = (step - plan.warmup) / max(1, plan.steps - plan.warmup)
    return plan.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


class Trainer:
    """Owns the draft, its optimiser and the checkpoint file; ``run`` trains to the plan."""

    def __init__(self, draft: Any, plan: TrainPlan, pad_id: int) -> None:
        import torch

        from draft_models.architecture import freeze_shared

        torch.manual_seed(plan.seed)
        torch.set_num_threads(plan.threads)
        self.draft = draft
        self.plan = plan
        self.pad_id = pad_id
        self.params = freeze_shared(draft)
        self.optimizer = torch.optim.AdamW(self.params, lr=plan.lr, weight_decay=0.0)
        self.step = 0
        self.result = TrainResult(0, 0, AcceptanceReport(plan.k))
        self.best_tensors: dict[str, Any] = {}
        self._stale_evals = 0
        self._subset: VocabSubset | None = None

    def run(self, train: list[Sample], heldout: list[Sample], progress: ProgressFn) -> TrainResult:
        self._resume()
        self._subset = VocabSubset.from_samples(train, int(self.draft.config.vocab_size))
        started = time.monotonic() - self.result.wall_s
        self.draft.train()
        while self.step < self.plan.steps and not self.result.stopped_early:
            loss = self._train_step(batch_for_step(train, self.plan, self.step))
            self.step += 1
            metrics = {"loss": loss}
            if self.step % self.plan.eval_every == 0 or self.step == self.plan.steps:
                metrics.update(self._evaluate(heldout))
            self.result.wall_s = time.monotonic() - started
            if self.step % self.plan.checkpoint_every == 0 or "acceptance" in metrics:
                self._save()
            progress(self.step, self.plan.steps, metrics)
        self.result.steps = self.step
        self._save()
        return self.result

    def _train_step(self, batch: list[Sample]) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.plan, self.step)
        loss = loss_on(self.draft, batch, self.plan.soft_weight, self.pad_id, self._subset)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        import torch

        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        return float(loss.detach())

    def _evaluate(self, heldout: list[Sample]) -> dict[str, float]:
        from draft_models.architecture import trained_tensors

        report = acceptance(self.draft, heldout, self.plan.k)
        entry = {"step": float(self.step), "acceptance": report.rate,
                 "mean_accepted_length": report.mean_accepted_length}
        self.result.history.append(entry)
        if report.rate > self.result.best.rate + 0.005 or not self.best_tensors:
            self.result.best, self.result.best_step = report, self.step
            self.best_tensors = {k: v.clone() for k, v in trained_tensors(self.draft).items()}
            self._stale_evals = 0
        else:
            self._stale_evals += 1
            self.result.stopped_early = self._stale_evals >= self.plan.patience
        return entry

    def _save(self) -> None:
        import torch

        from draft_models.architecture import trained_tensors

        state = {
            "step": self.step, "tensors": trained_tensors(self.draft),
            "optimizer": self.optimizer.state_dict(), "result": self.result,
            "best_tensors": self.best_tensors, "stale_evals": self._stale_evals,
            "rng": torch.get_rng_state(),
        }
        partial = self.plan.checkpoint.with_suffix(".partial")
        partial.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, partial)
        partial.rename(self.plan.checkpoint)

    def _resume(self) -> None:
        import torch

        if not self.plan.checkpoint.is_file():
            return
        state = torch.load(self.plan.checkpoint, weights_only=False)
        self.draft.load_state_dict(state["tensors"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.result = state["result"]
        self.best_tensors = state["best_tensors"]
        self._stale_evals = int(state["stale_evals"])
        torch.set_rng_state(state["rng"])
