"""Prompts the target writes itself (Magpie: Xu et al., 2024, arXiv:2406.08464).

An instruction-tuned model, given its chat template only up to the start of a user turn,
completes the turn with the kind of request it was tuned on. Sampled with a seed, that
gives thousands of varied user turns for free, in the voice of real chats rather than of
the bundled templates: the distribution a draft sees when the gateway serves chats.

Rules applied to each sampled turn: it must end inside the turn (the model wrote its end
of turn), be 3 to 60 words long, be new (case and spacing folded), and mention none of
the ``exclude`` words (the benchmark's chat topics, so the benchmark stays held out).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from draft_models.prompts import Prompt

_SENTINEL = "\x00user-turn\x00"
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class SelfPromptPlan:
    target_dir: Path
    count: int
    seed: int = 0
    temperature: float = 1.0
    top_p: float = 0.95
    max_tokens: int = 96
    min_words: int = 3
    max_words: int = 60
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 < self.top_p <= 1 or self.temperature <= 0:
            raise ValueError("count >= 1, 0 < top_p <= 1 and temperature > 0 required")
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError("need 1 <= min_words <= max_words")


def user_turn_prefix(target_dir: Path) -> str:
    """The chat template rendered up to where a user's words would start."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(target_dir))
    text: Any = tokenizer.apply_chat_template(
        [{"role": "user", "content": _SENTINEL}], add_generation_prompt=False, tokenize=False)
    assert isinstance(text, str) and _SENTINEL in text, "chat template dropped the user turn"
    return text.split(_SENTINEL, 1)[0]


def keep(text: str, plan: SelfPromptPlan) -> bool:
    """Whether a sampled turn is a usable prompt (see the module's rules)."""
    words = _WORD.findall(text.lower())
    if not plan.min_words <= len(text.split()) <= plan.max_words:
        return False
    return not any(w.startswith(x) for w in words for x in plan.exclude)


def select(turns: Iterable[str], plan: SelfPromptPlan, seen: set[str]) -> list[Prompt]:
    """Usable, not yet seen turns, in order; ``seen`` is updated."""
    chosen = []
    for turn in turns:
        text = turn.strip()
        key = " ".join(text.lower().split())
        if key in seen or not keep(text, plan):
            continue
        seen.add(key)
        chosen.append(Prompt(text, source="self"))
    return chosen


Completer = Callable[[str, list[int]], list[tuple[str, bool]]]
"""Samples one continuation of ``prefix`` per seed: (text, whether the turn ended)."""


def offline_completer(llm: Any, plan: SelfPromptPlan) -> Completer:
    """Sample with an offline vLLM ``LLM`` (how ``draft train`` runs it)."""
    from vllm import SamplingParams

    def complete(prefix: str, seeds: list[int]) -> list[tuple[str, bool]]:
        params = [SamplingParams(temperature=plan.temperature, top_p=plan.top_p,
                                 max_tokens=plan.max_tokens, seed=seed) for seed in seeds]
        outputs = llm.generate([prefix] * len(seeds), params, use_tqdm=False)
        return [(o.outputs[0].text, o.outputs[0].finish_reason == "stop") for o in outputs]

    return complete


def sample_prompts(plan: SelfPromptPlan, complete: Completer,
                   progress: Callable[[int, int], None] = lambda done, total: None,
                   ) -> list[Prompt]:
    """``plan.count`` prompts sampled from the target, the same ones for the same seed."""
    prefix = user_turn_prefix(plan.target_dir)
    prompts: list[Prompt] = []
    seen: set[str] = set()
    for round_ in range(8):
        if len(prompts) >= plan.count:
            break
        first = (plan.seed * 8 + round_) * 1_000_000
        seeds = list(range(first, first + 2 * (plan.count - len(prompts))))
        finished = [text for text, ended in complete(prefix, seeds) if ended]
        prompts += select(finished, plan, seen)
        progress(min(len(prompts), plan.count), plan.count)
    return prompts[:plan.count]
