"""What the distillation losses share: the vocabulary they normalise over and the soft term.

Every kind scores a draft on the target's greedy token (cross-entropy) plus a soft
cross-entropy on the target's renormalised top-k, over a vocabulary smaller than the
target's: the tokens the target said or ranked (``VocabSubset``) or a head's own draft
vocabulary. Acceptance is always measured with the full head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from draft_models.datagen import Sample

TopK = tuple[tuple[int, ...], tuple[float, ...]]  # the target's top ids and log-probabilities


@dataclass(frozen=True)
class VocabSubset:
    """The tokens the training loss normalises over: every token the target said or
    ranked in its top-k. The full head costs ~6x more per position on a 49k vocabulary."""

    ids: torch.Tensor  # sorted vocabulary ids
    index: torch.Tensor  # vocabulary id -> position in ``ids`` (-1 outside)

    def __post_init__(self) -> None:
        if self.ids.dim() != 1 or self.index.dim() != 1:
            raise ValueError("ids and index must be 1-d")

    @classmethod
    def from_samples(cls, samples: list[Sample], vocab_size: int) -> VocabSubset:
        seen = {t for s in samples for t in s.output_ids}
        seen.update(t for s in samples for row in s.top_ids for t in row)
        ids = torch.tensor(sorted(seen), dtype=torch.long)
        index = torch.full((vocab_size,), -1, dtype=torch.long)
        index[ids] = torch.arange(len(ids))
        return cls(ids, index)


def soft_cross_entropy(logp: torch.Tensor, top: list[TopK], index: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against the target's top-k, renormalised, over the part of it that
    ``index`` (vocabulary id -> column of ``logp``, -1 outside) keeps."""
    if not top or not top[0][0]:
        return torch.zeros(())
    k = min(len(ids) for ids, _ in top)
    ids = index[torch.tensor([list(ids[:k]) for ids, _ in top])]
    probs = torch.softmax(torch.tensor([list(lps[:k]) for _, lps in top]), dim=-1)
    probs = probs * (ids >= 0)
    return -(probs * logp.gather(1, ids.clamp(min=0))).sum(dim=-1).mean()
