"""The objective of a small Llama draft (kind ``draft_model``): distillation by teacher forcing.

Loss on every answer position: cross-entropy on the target's greedy token plus a soft
cross-entropy on its renormalised top-k, normalised over the tokens the target used.
Only the draft's layers and final norm train; embeddings and the tied head stay the
target's. Acceptance is per-token agreement under teacher forcing
(``draft_models/evaluate.py``); the best weights gain half a point of acceptance on the
last best, and training stops when they stop doing so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from draft_models.acceptance import AcceptanceReport
from draft_models.architecture import freeze_shared, trained_tensors
from draft_models.datagen import Sample
from draft_models.evaluate import acceptance
from draft_models.losses import VocabSubset
from draft_models.train import BY_RATE, Selection, Weights


@dataclass
class _Targets:
    rows: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    top_ids: list[list[int]] = field(default_factory=list)
    top_lps: list[list[float]] = field(default_factory=list)


def _batch_tensors(batch: list[Sample], pad_id: int) -> tuple[torch.Tensor, torch.Tensor,
                                                              _Targets]:
    width = max(len(s.prompt_ids) + len(s.output_ids) for s in batch)
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
            subset: VocabSubset | None = None) -> torch.Tensor:
    """Hard CE on the greedy token + ``soft_weight`` x soft CE on the target's top-k."""
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
    hard: torch.Tensor = F.nll_loss(logp, labels)
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


@dataclass(frozen=True)
class DraftModelObjective:
    """A ``LlamaForCausalLM`` draft sharing the target's embeddings and head."""

    draft: Any  # LlamaForCausalLM
    pad_id: int
    subset: VocabSubset | None  # None: normalise over the whole vocabulary
    soft_weight: float = 0.5

    def __post_init__(self) -> None:
        if self.soft_weight < 0:
            raise ValueError("soft_weight must be >= 0")

    @classmethod
    def on(cls, draft: Any, train: list[Sample], pad_id: int) -> DraftModelObjective:
        """Normalised over the tokens the target used in ``train``."""
        return cls(draft, pad_id, VocabSubset.from_samples(train, int(draft.config.vocab_size)))

    @property
    def model(self) -> torch.nn.Module:
        module: torch.nn.Module = self.draft
        return module

    @property
    def selection(self) -> Selection:
        return BY_RATE

    def parameters(self) -> list[torch.nn.Parameter]:
        return freeze_shared(self.draft)

    def loss(self, batch: list[Sample]) -> torch.Tensor:
        return loss_on(self.draft, batch, self.soft_weight, self.pad_id, self.subset)

    def acceptance(self, samples: list[Sample], k: int) -> AcceptanceReport:
        return acceptance(self.draft, samples, k)

    def weights(self) -> Weights:
        return trained_tensors(self.draft)

    def load(self, weights: Weights) -> None:
        self.draft.load_state_dict(weights, strict=False)
