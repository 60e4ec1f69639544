"""Prompts to distil on: the bundled set, and (opt-in) prompts exported from the ledger.

The bundled set (``data/prompt_set.json``) is templates x topics plus a few standalone
chats, shuffled with a fixed seed so every machine builds the same list. Topics in it
never appear in ``bench/`` chat prompts, so the benchmark measures held-out acceptance.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

_BUNDLED = Path(__file__).resolve().parent / "data" / "prompt_set.json"


@dataclass(frozen=True)
class Prompt:
    """One user turn (the target's chat template adds its default system prompt)."""

    text: str
    source: str = "bundled"

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("prompt text must not be empty")


def bundled_prompts(seed: int = 0) -> list[Prompt]:
    data = json.loads(_BUNDLED.read_text())
    texts = [t.format(topic=topic) for t in data["templates"] for topic in data["topics"]]
    texts.extend(data["standalone"])
    random.Random(seed).shuffle(texts)
    return [Prompt(text) for text in texts]


def held_out_words() -> tuple[str, ...]:
    """Word stems of the benchmark's chat topics: sampled prompts that use one are dropped."""
    return tuple(json.loads(_BUNDLED.read_text())["held_out_words"])


def ledger_prompts(path: Path) -> list[Prompt]:
    """Read a JSONL export of logged requests: ``{"messages": [{"role", "content"}...]}``.

    The last user message of each line becomes a prompt; lines without one are skipped.
    """
    prompts = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        messages = json.loads(line).get("messages", [])
        users = [m["content"] for m in messages if m.get("role") == "user"]
        if users and isinstance(users[-1], str) and users[-1].strip():
            prompts.append(Prompt(users[-1], source="ledger"))
    return prompts


def split(prompts: list[Prompt], held_out: int) -> tuple[list[Prompt], list[Prompt]]:
    """The last ``held_out`` prompts measure acceptance; the rest train."""
    if not 0 <= held_out < len(prompts):
        raise ValueError(f"held_out must be in [0, {len(prompts)})")
    cut = len(prompts) - held_out
    return prompts[:cut], prompts[cut:]
