"""Training an EAGLE head on the target's answers and hidden states (torch, CPU).

The target's final hidden states for every distillation sample are computed once
(float32, transformers: the same numbers vLLM hands the head) and cached next to the
data. Each step unrolls ``passes`` drafting steps (see ``EagleHead.unroll``) and scores
every one: cross-entropy on the target's greedy token plus a soft cross-entropy on its
top-k (normalised over the vocabulary the target used), and a smooth-L1 pull of the
predicted hidden state towards the target's. Later steps weigh less (``decay``).
Acceptance is measured exactly as vLLM drafts: each step starts afresh from the
target's hidden state, later tokens from the head's own outputs.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.nn import functional as F

from draft_models.acceptance import AcceptanceReport, simulate_runs
from draft_models.datagen import Sample
from draft_models.eagle import EagleHead
from draft_models.train import TrainPlan, TrainResult, VocabSubset, batch_for_step, lr_at

ProgressFn = Callable[[int, int, dict[str, float]], None]


@dataclass(frozen=True)
class Frozen:
    """What the head borrows from the target: token embeddings and the output head."""

    embed: torch.Tensor  # (V, H)
    lm_head: torch.Tensor  # (V, H)


def target_features(target: Any, samples: list[Sample], cache: Path) -> list[torch.Tensor]:
    """Final (normed) hidden state at every position of prompt + answer, per sample."""
    def final(ids: torch.Tensor) -> torch.Tensor:
        return target.model(input_ids=ids).last_hidden_state[0].clone()  # type: ignore[no-any-return]

    return cached_features(samples, cache, "final", final)


def cached_features(samples: list[Sample], cache: Path, tag: str,
                    compute: Callable[[torch.Tensor], torch.Tensor]) -> list[torch.Tensor]:
    """``compute`` (token ids (1, L) -> (L, F)) per sample, cached in ``cache`` under a
    digest of ``tag`` and the token ids: computed once per data set."""
    digest = hashlib.sha256(tag.encode())
    for s in samples:
        digest.update(repr((s.prompt_ids, s.output_ids)).encode())
    key = digest.hexdigest()
    if cache.is_file():
        stored = torch.load(cache, weights_only=False)
        if stored["key"] == key:
            return list(stored["features"])
    with torch.inference_mode():
        features = [compute(torch.tensor([list(s.prompt_ids) + list(s.output_ids)]))
                    for s in samples]
    partial = cache.with_suffix(".partial")
    torch.save({"key": key, "features": features}, partial)
    partial.rename(cache)
    return features


@dataclass
class Batch:
    embeds: torch.Tensor
    hidden: torch.Tensor
    rows: list[list[int]] = field(default_factory=list)  # per pass: batch row
    cols: list[list[int]] = field(default_factory=list)  # per pass: index
    labels: list[list[int]] = field(default_factory=list)  # per pass: answer token
    top: list[list[tuple[tuple[int, ...], tuple[float, ...]]]] = field(default_factory=list)
    goals: list[list[tuple[int, int]]] = field(default_factory=list)  # (row, position)


def collate(batch: list[tuple[Sample, torch.Tensor]], embed: torch.Tensor, passes: int) -> Batch:
    """Padded embeddings and features, and per pass which (row, index) guesses which token."""
    width = max(f.shape[0] for _, f in batch)
    embeds = torch.zeros((len(batch), width, embed.shape[1]))
    hidden = torch.zeros((len(batch), width, batch[0][1].shape[1]))
    out = Batch(embeds, hidden, [[] for _ in range(passes)], [[] for _ in range(passes)],
                 [[] for _ in range(passes)], [[] for _ in range(passes)],
                 [[] for _ in range(passes)])
    for r, (sample, feats) in enumerate(batch):
        ids = torch.tensor(list(sample.prompt_ids) + list(sample.output_ids))
        embeds[r, :len(ids)] = embed[ids]
        hidden[r, :len(ids)] = feats
        prompt = len(sample.prompt_ids)
        for s in range(passes):
            for j, token in enumerate(sample.output_ids):
                i = prompt + j - s - 2  # index whose step s guesses answer token j
                if i < 0:
                    continue
                out.rows[s].append(r)
                out.cols[s].append(i)
                out.labels[s].append(token)
                out.top[s].append((sample.top_ids[j], sample.top_logprobs[j])
                                  if sample.top_ids else ((), ()))
                out.goals[s].append((r, i + s + 1))
    return out


def loss_on(head: EagleHead, batch: Batch, frozen: Frozen, plan: EaglePlan,
            subset: VocabSubset) -> torch.Tensor:
    outs = head.unroll(batch.embeds, batch.hidden, plan.passes)
    head_rows = frozen.lm_head[subset.ids]
    total = torch.zeros(())
    for s, out in enumerate(outs):
        if not batch.rows[s]:
            continue
        picked = out[batch.rows[s], batch.cols[s]]
        logp = F.log_softmax(picked @ head_rows.T, dim=-1)
        labels = subset.index[torch.tensor(batch.labels[s])]
        loss = F.nll_loss(logp, labels) + plan.soft_weight * _soft(logp, batch.top[s], subset)
        goal_rows, goal_pos = zip(*batch.goals[s], strict=True)
        goal = batch.hidden[list(goal_rows), list(goal_pos)]
        loss = loss + plan.feature_weight * F.smooth_l1_loss(picked, goal)
        total = total + plan.decay ** s * loss
    return total


def _soft(logp: torch.Tensor, top: list[tuple[tuple[int, ...], tuple[float, ...]]],
          subset: VocabSubset) -> torch.Tensor:
    if not top or not top[0][0]:
        return torch.zeros(())
    k = min(len(ids) for ids, _ in top)
    ids = subset.index[torch.tensor([list(ids[:k]) for ids, _ in top])]
    probs = torch.softmax(torch.tensor([list(lps[:k]) for _, lps in top]), dim=-1)
    return -(probs * logp.gather(1, ids)).sum(dim=-1).mean()


def count_runs(guesses: list[list[int]], sample: Sample, k: int) -> list[int]:
    """For each answer token ``t``: how many drafts in a row a step starting there gets
    right, given ``guesses[s][i]``: the token drafting step ``s`` at index ``i`` proposes."""
    answer, prompt = sample.output_ids, len(sample.prompt_ids)
    runs = [0] * len(answer)
    for t in range(1, len(answer)):
        n = prompt + t - 2
        while runs[t] < k and t + runs[t] < len(answer) and \
                guesses[runs[t]][n] == answer[t + runs[t]]:
            runs[t] += 1
    return runs


Guesser = Callable[[torch.Tensor, torch.Tensor, int], list[list[int]]]


def acceptance_of(head: torch.nn.Module, guess: Guesser, samples: list[Sample],
                  feats: list[torch.Tensor], k: int) -> AcceptanceReport:
    """Acceptance exactly as vLLM drafts: ``guess(token ids, features, k)`` per sample."""
    was_training = head.training
    head.eval()
    report = AcceptanceReport(k)
    with torch.inference_mode():
        for sample, f in zip(samples, feats, strict=True):
            ids = torch.tensor(list(sample.prompt_ids) + list(sample.output_ids))
            report = report.merge(simulate_runs(count_runs(guess(ids, f, k), sample, k), k))
    head.train(was_training)
    return report


def eagle_acceptance(head: EagleHead, samples: list[Sample], feats: list[torch.Tensor],
                     frozen: Frozen, k: int) -> AcceptanceReport:
    def guess(ids: torch.Tensor, f: torch.Tensor, k: int) -> list[list[int]]:
        outs = head.unroll(frozen.embed[ids][None], f[None], k)
        return [(out[0] @ frozen.lm_head.T).argmax(dim=-1).tolist() for out in outs]

    return acceptance_of(head, guess, samples, feats, k)


class Objective(Protocol):
    """What a head kind trains on and how its drafts are scored."""

    def loss(self, batch: list[tuple[Sample, torch.Tensor]]) -> torch.Tensor: ...

    def acceptance(self, samples: list[Sample], feats: list[torch.Tensor],
                   k: int) -> AcceptanceReport: ...


@dataclass(frozen=True)
class EagleObjective:
    head: EagleHead
    frozen: Frozen
    plan: EaglePlan
    subset: VocabSubset

    def loss(self, batch: list[tuple[Sample, torch.Tensor]]) -> torch.Tensor:
        return loss_on(self.head, collate(batch, self.frozen.embed, self.plan.passes),
                       self.frozen, self.plan, self.subset)

    def acceptance(self, samples: list[Sample], feats: list[torch.Tensor],
                   k: int) -> AcceptanceReport:
        return eagle_acceptance(self.head, samples, feats, self.frozen, k)


@dataclass(frozen=True)
class EaglePlan:
    train: TrainPlan
    passes: int = 3
    soft_weight: float = 0.5
    feature_weight: float = 1.0
    decay: float = 0.8

    def __post_init__(self) -> None:
        if self.passes < 1 or not 0 < self.decay <= 1:
            raise ValueError("passes >= 1 and decay in (0, 1]")


class EagleTrainer:
    """Owns the head, its optimiser and checkpoint; ``run`` trains to the plan."""

    def __init__(self, head: torch.nn.Module, frozen: Frozen, plan: EaglePlan,
                 objective: Callable[[list[Sample]], Objective] | None = None) -> None:
        """``objective(train samples)``: the head kind's; EAGLE's by default."""
        torch.manual_seed(plan.train.seed)
        torch.set_num_threads(plan.train.threads)
        self.head, self.frozen, self.plan = head, frozen, plan
        self.objective = objective or self._eagle_objective
        self.optimizer = torch.optim.AdamW(head.parameters(), lr=plan.train.lr, weight_decay=0.0)
        self.step = 0
        self.result = TrainResult(0, 0, AcceptanceReport(plan.train.k))
        self.best_state: dict[str, torch.Tensor] = {}

    def run(self, train: list[Sample], train_feats: list[torch.Tensor], heldout: list[Sample],
            held_feats: list[torch.Tensor], progress: ProgressFn) -> TrainResult:
        plan = self.plan.train
        self._resume()
        objective = self.objective(train)
        by_sample = {id(s): f for s, f in zip(train, train_feats, strict=True)}
        started = time.monotonic() - self.result.wall_s
        while self.step < plan.steps:
            for group in self.optimizer.param_groups:
                group["lr"] = lr_at(plan, self.step)
            batch = [(s, by_sample[id(s)]) for s in batch_for_step(train, plan, self.step)]
            loss = objective.loss(batch)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(self.head.parameters(), 1.0)
            self.optimizer.step()
            self.step += 1
            metrics = {"loss": float(loss.detach())}
            if self.step % plan.eval_every == 0 or self.step == plan.steps:
                metrics.update(self._evaluate(objective.acceptance(heldout, held_feats,
                                                                   plan.k)))
            self.result.wall_s = time.monotonic() - started
            if self.step % plan.checkpoint_every == 0 or "acceptance" in metrics:
                self._save()
            progress(self.step, plan.steps, metrics)
        self.result.steps = self.step
        self._save()
        return self.result

    def _eagle_objective(self, train: list[Sample]) -> Objective:
        assert isinstance(self.head, EagleHead)
        subset = VocabSubset.from_samples(train, self.frozen.embed.shape[0])
        return EagleObjective(self.head, self.frozen, self.plan, subset)

    def _evaluate(self, report: AcceptanceReport) -> dict[str, float]:
        entry = {"step": float(self.step), "acceptance": report.rate,
                 "mean_accepted_length": report.mean_accepted_length}
        self.result.history.append(entry)
        best = self.result.best
        if report.mean_accepted_length >= best.mean_accepted_length or not self.best_state:
            self.result.best, self.result.best_step = report, self.step
            self.best_state = {k: v.clone() for k, v in self.head.state_dict().items()}
        return entry

    def _save(self) -> None:
        state = {"step": self.step, "head": self.head.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "result": self.result,
                 "best_state": self.best_state, "rng": torch.get_rng_state()}
        checkpoint = self.plan.train.checkpoint
        partial = checkpoint.with_suffix(".partial")
        partial.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, partial)
        partial.rename(checkpoint)

    def _resume(self) -> None:
        checkpoint = self.plan.train.checkpoint
        if not checkpoint.is_file():
            return
        state = torch.load(checkpoint, weights_only=False)
        self.head.load_state_dict(state["head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.result = int(state["step"]), state["result"]
        self.best_state = state["best_state"]
        torch.set_rng_state(state["rng"])
