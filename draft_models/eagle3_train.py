"""Training an EAGLE-3 head (torch, CPU): what differs from an EAGLE head.

The features are the target's residual streams after ``aux_layers`` layers (exactly
what vLLM collects for ``method: eagle3``: hidden + residual, before any norm),
concatenated per position and cached once. The loss is over the draft vocabulary only:
cross-entropy on the target's greedy token where it is in the vocabulary, plus the soft
cross-entropy on the target's top-k mass that falls inside it; there is no pull towards
the target's states (the head's own state is not the target's). Acceptance maps draft
ids back with ``d2t``, so a token outside the vocabulary is a miss, as in vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from draft_models.acceptance import AcceptanceReport
from draft_models.datagen import Sample
from draft_models.eagle3 import Eagle3Head
from draft_models.eagle_train import Batch, EaglePlan, acceptance_of, cached_features, collate


def aux_features(target: Any, samples: list[Sample], layers: tuple[int, ...],
                 cache: Path) -> list[torch.Tensor]:
    """Per sample (L, len(layers) * H): the residual stream after each of ``layers``."""
    captured: dict[int, torch.Tensor] = {}

    def hook(index: int) -> Any:
        def keep(_module: Any, _inputs: Any, output: Any) -> None:
            captured[index] = output[0] if isinstance(output, tuple) else output
        return keep

    handles = [target.model.layers[n - 1].register_forward_hook(hook(n)) for n in layers]

    def streams(ids: torch.Tensor) -> torch.Tensor:
        target.model(input_ids=ids)
        return torch.cat([captured[n][0] for n in layers], dim=-1).clone()

    try:
        return cached_features(samples, cache, f"aux{layers}", streams)
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class Eagle3Objective:
    head: Eagle3Head
    embed: torch.Tensor  # the target's token embeddings (V, H)
    plan: EaglePlan

    def loss(self, batch: list[tuple[Sample, torch.Tensor]]) -> torch.Tensor:
        return self.loss_on(collate(batch, self.embed, self.plan.passes))

    def loss_on(self, batch: Batch) -> torch.Tensor:
        index = self._index()
        outs = self.head.unroll(batch.embeds, batch.hidden, self.plan.passes)
        total = torch.zeros(())
        for s, out in enumerate(outs):
            labels = index[torch.tensor(batch.labels[s], dtype=torch.long)]
            keep = labels >= 0
            if not bool(keep.any()):
                continue
            rows = torch.tensor(batch.rows[s])[keep]
            cols = torch.tensor(batch.cols[s])[keep]
            logp = F.log_softmax(self.head.logits(out[rows, cols]), dim=-1)
            loss = F.nll_loss(logp, labels[keep])
            top = [t for t, k in zip(batch.top[s], keep.tolist(), strict=True) if k]
            loss = loss + self.plan.soft_weight * _soft(logp, top, index)
            total = total + self.plan.decay ** s * loss
        return total

    def acceptance(self, samples: list[Sample], feats: list[torch.Tensor],
                   k: int) -> AcceptanceReport:
        return eagle3_acceptance(self.head, self.embed, samples, feats, k)

    def _index(self) -> torch.Tensor:
        index = torch.full((self.embed.shape[0],), -1, dtype=torch.long)
        vocab = self.head.target_ids(torch.arange(self.head.shape.draft_vocab))
        index[vocab] = torch.arange(len(vocab))
        return index


def _soft(logp: torch.Tensor, top: list[tuple[tuple[int, ...], tuple[float, ...]]],
          index: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the target's top-k, renormalised, over the part in the vocabulary."""
    if not top or not top[0][0]:
        return torch.zeros(())
    k = min(len(ids) for ids, _ in top)
    ids = index[torch.tensor([list(ids[:k]) for ids, _ in top])]
    probs = torch.softmax(torch.tensor([list(lps[:k]) for _, lps in top]), dim=-1)
    probs = probs * (ids >= 0)
    return -(probs * logp.gather(1, ids.clamp(min=0))).sum(dim=-1).mean()


def eagle3_acceptance(head: Eagle3Head, embed: torch.Tensor, samples: list[Sample],
                      feats: list[torch.Tensor], k: int) -> AcceptanceReport:
    def guess(ids: torch.Tensor, f: torch.Tensor, k: int) -> list[list[int]]:
        outs = head.unroll(embed[ids][None], f[None], k)
        return [head.target_ids(head.logits(out[0]).argmax(dim=-1)).tolist() for out in outs]

    return acceptance_of(head, guess, samples, feats, k)
