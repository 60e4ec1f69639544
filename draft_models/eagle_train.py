"""The objective of an EAGLE head (kind ``eagle``), and what EAGLE-3's shares (torch, CPU).

The target's final hidden states for every distillation sample are computed once
(float32, transformers: the same numbers vLLM hands the head) and cached next to the
data. Each step unrolls ``passes`` drafting steps (see ``EagleHead.unroll``) and scores
every one: cross-entropy on the target's greedy token plus a soft cross-entropy on its
top-k (normalised over the vocabulary the target used), and a smooth-L1 pull of the
predicted hidden state towards the target's. Later steps weigh less (``decay``).
Acceptance is measured exactly as vLLM drafts: each step starts afresh from the
target's hidden state, later tokens from the head's own outputs. The weights kept are
the last with the longest mean accepted length; a head trains all its steps.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from draft_models.acceptance import AcceptanceReport, simulate_runs
from draft_models.datagen import Sample
from draft_models.eagle import EagleHead
from draft_models.losses import TopK, VocabSubset, soft_cross_entropy
from draft_models.train import BY_LENGTH, Selection, Weights

Features = Mapping[Sample, torch.Tensor]  # the target's features of each sample


@dataclass(frozen=True)
class Frozen:
    """What the head borrows from the target: token embeddings and the output head."""

    embed: torch.Tensor  # (V, H)
    lm_head: torch.Tensor  # (V, H)


@dataclass(frozen=True)
class HeadLoss:
    """How a head's unrolled drafting steps are scored."""

    passes: int = 3  # drafting steps unrolled and scored
    soft_weight: float = 0.5
    feature_weight: float = 1.0  # EAGLE: smooth-L1 towards the target's hidden state
    decay: float = 0.8  # weight of each later step relative to the one before

    def __post_init__(self) -> None:
        if self.passes < 1 or not 0 < self.decay <= 1:
            raise ValueError("passes >= 1 and decay in (0, 1]")


def loaded_target(target_dir: Path) -> tuple[Any, Frozen]:
    """The target in float32 (transformers) and what a head borrows from it."""
    from transformers import AutoModelForCausalLM

    target = AutoModelForCausalLM.from_pretrained(str(target_dir), dtype=torch.float32)
    frozen = Frozen(target.model.embed_tokens.weight.detach(), target.lm_head.weight.detach())
    return target, frozen


def feature_table(samples: list[Sample], feats: list[torch.Tensor]) -> dict[Sample, torch.Tensor]:
    """Each sample's features (they depend on its token ids only, so equal samples share)."""
    return dict(zip(samples, feats, strict=True))


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
    top: list[list[TopK]] = field(default_factory=list)
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


def loss_on(head: EagleHead, batch: Batch, frozen: Frozen, scoring: HeadLoss,
            subset: VocabSubset) -> torch.Tensor:
    outs = head.unroll(batch.embeds, batch.hidden, scoring.passes)
    head_rows = frozen.lm_head[subset.ids]
    total = torch.zeros(())
    for s, out in enumerate(outs):
        if not batch.rows[s]:
            continue
        picked = out[batch.rows[s], batch.cols[s]]
        logp = F.log_softmax(picked @ head_rows.T, dim=-1)
        labels = subset.index[torch.tensor(batch.labels[s])]
        soft = soft_cross_entropy(logp, batch.top[s], subset.index)
        loss = F.nll_loss(logp, labels) + scoring.soft_weight * soft
        goal_rows, goal_pos = zip(*batch.goals[s], strict=True)
        goal = batch.hidden[list(goal_rows), list(goal_pos)]
        loss = loss + scoring.feature_weight * F.smooth_l1_loss(picked, goal)
        total = total + scoring.decay ** s * loss
    return total


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




@dataclass(frozen=True)
class HeadObjective:
    """What the EAGLE heads' objectives share: all of a head's weights train."""

    head: torch.nn.Module
    features: Features  # of every training and held-out sample

    @property
    def model(self) -> torch.nn.Module:
        return self.head

    @property
    def selection(self) -> Selection:
        return BY_LENGTH

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.head.parameters())

    def weights(self) -> Weights:
        return self.head.state_dict()

    def load(self, weights: Weights) -> None:
        self.head.load_state_dict(weights)

    def paired(self, batch: list[Sample]) -> list[tuple[Sample, torch.Tensor]]:
        return [(s, self.features[s]) for s in batch]


@dataclass(frozen=True)
class EagleObjective(HeadObjective):
    head: EagleHead
    frozen: Frozen
    scoring: HeadLoss
    subset: VocabSubset  # the tokens the target used in the training answers

    def loss(self, batch: list[Sample]) -> torch.Tensor:
        collated = collate(self.paired(batch), self.frozen.embed, self.scoring.passes)
        return loss_on(self.head, collated, self.frozen, self.scoring, self.subset)

    def acceptance(self, samples: list[Sample], k: int) -> AcceptanceReport:
        feats = [self.features[s] for s in samples]
        return eagle_acceptance(self.head, samples, feats, self.frozen, k)
