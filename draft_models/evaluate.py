"""Offline acceptance of a draft on held-out target answers (torch, no vLLM)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from draft_models.acceptance import AcceptanceReport, simulate
from draft_models.datagen import Sample


def matches(draft: Any, sample: Sample) -> list[bool]:
    """Teacher-forced: does the draft's argmax equal each answer token?"""
    import torch

    ids = torch.tensor([list(sample.prompt_ids) + list(sample.output_ids)])
    start = len(sample.prompt_ids) - 1
    with torch.inference_mode():
        logits = draft(input_ids=ids).logits[0, start:start + len(sample.output_ids)]
    predicted = logits.argmax(dim=-1).tolist()
    return [int(p) == int(t) for p, t in zip(predicted, sample.output_ids, strict=True)]


def acceptance(draft: Any, samples: Iterable[Sample], k: int) -> AcceptanceReport:
    was_training = bool(getattr(draft, "training", False))
    draft.eval()
    report = AcceptanceReport(k)
    for sample in samples:
        report = report.merge(simulate(matches(draft, sample), k))
    if was_training:
        draft.train()
    return report
