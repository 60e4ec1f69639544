"""Text shipped with the repository for calibration and for the quality gates.

- ``calibration_prompts.txt``: user turns; ``make_calibration`` answered them once with the
  float32 model (greedy) into ``calibration_chats.jsonl``, the chats every run calibrates on.
- ``heldout.txt``: original prose used only for perplexity, never for calibration.
- ``greedy_prompts.txt``: a fixed prompt set for greedy agreement with float32.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
CHATS = DATA / "calibration_chats.jsonl"


def _lines(name: str) -> list[str]:
    text = (DATA / name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def prompt_lines() -> list[str]:
    return _lines("calibration_prompts.txt")


def calibration_chats(count: int) -> list[tuple[str, str]]:
    """The first ``count`` shipped (prompt, answer) pairs, in a stable order."""
    chats = [json.loads(line) for line in _lines(CHATS.name)]
    if not 1 <= count <= len(chats):
        raise ValueError(f"calibration set has {len(chats)} chats; asked for {count}")
    return [(str(c["prompt"]), str(c["answer"])) for c in chats[:count]]


def greedy_prompts() -> list[str]:
    return _lines("greedy_prompts.txt")


def heldout_text() -> str:
    return (DATA / "heldout.txt").read_text(encoding="utf-8")


def digest(texts: list[str]) -> str:
    """A short content hash, recorded next to the weights it produced."""
    sha = hashlib.sha256()
    for text in texts:
        sha.update(text.encode())
        sha.update(b"\0")
    return sha.hexdigest()[:16]
