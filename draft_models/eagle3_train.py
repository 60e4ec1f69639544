"""The objective of an EAGLE-3 head (kind ``eagle3``): what differs from an EAGLE head.

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
from draft_models.eagle_train import (
    Batch,
    HeadLoss,
    HeadObjective,
    acceptance_of,
    cached_features,
    collate,
)
from draft_models.losses import soft_cross_entropy


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
class Eagle3Objective(HeadObjective):
    head: Eagle3Head
    embed: torch.Tensor  # the target's token embeddings (V, H)
    scoring: HeadLoss

    def loss(self, batch: list[Sample]) -> torch.Tensor:
        return self.loss_on(collate(self.paired(batch), self.embed, self.scoring.passes))

    def loss_on(self, batch: Batch) -> torch.Tensor:
        index = self._index()
        outs = self.head.unroll(batch.embeds, batch.hidden, self.scoring.passes)
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
            loss = loss + self.scoring.soft_weight * soft_cross_entropy(logp, top, index)
            total = total + self.scoring.decay ** s * loss
        return total

    def acceptance(self, samples: list[Sample], k: int) -> AcceptanceReport:
        feats = [self.features[s] for s in samples]
        return eagle3_acceptance(self.head, self.embed, samples, feats, k)

    def _index(self) -> torch.Tensor:
        index = torch.full((self.embed.shape[0],), -1, dtype=torch.long)
        vocab = self.head.target_ids(torch.arange(self.head.shape.draft_vocab))
        index[vocab] = torch.arange(len(vocab))
        return index


def eagle3_acceptance(head: Eagle3Head, embed: torch.Tensor, samples: list[Sample],
                      feats: list[torch.Tensor], k: int) -> AcceptanceReport:
    def guess(ids: torch.Tensor, f: torch.Tensor, k: int) -> list[list[int]]:
        outs = head.unroll(embed[ids][None], f[None], k)
        return [head.target_ids(head.logits(out[0]).argmax(dim=-1)).tolist() for out in outs]

    return acceptance_of(head, guess, samples, feats, k)
