"""Draft folders and their cards; checks that a draft can speculate for a target.

A draft may only propose tokens for a target that reads token ids the same way: the
same tokenizer (vocabulary, merges, special tokens) and the same vocabulary size.
``check_compatible`` compares the two folders and names every difference.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CARD_NAME = "draft-card.json"
CARD_FORMAT = "llm-gateway-draft/1"
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"  # drafts that ship with the package


class DraftIncompatibleError(ValueError):
    """The draft cannot serve this target; the message lists what differs."""


@dataclass(frozen=True)
class VocabularyFingerprint:
    """What must match between a draft and its target."""

    vocab_size: int
    tokenizer_sha256: str
    bos_token_id: int | None
    eos_token_id: int | None
    pad_token_id: int | None

    def differences(self, other: VocabularyFingerprint) -> list[str]:
        diffs = []
        for name in ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                diffs.append(f"{name}: target {mine} vs draft {theirs}")
        if self.tokenizer_sha256 != other.tokenizer_sha256:
            diffs.append(
                f"tokenizer.json: target sha256 {self.tokenizer_sha256[:12]} vs draft "
                f"{other.tokenizer_sha256[:12]} (different vocabulary or merges)"
            )
        return diffs


def _first_int(value: Any) -> int | None:
    if isinstance(value, list):
        return int(value[0]) if value else None
    return int(value) if value is not None else None


def fingerprint(folder: Path) -> VocabularyFingerprint:
    """Read a Hugging Face folder's vocabulary identity (no model weights loaded)."""
    config_path, tokenizer_path = folder / "config.json", folder / "tokenizer.json"
    for path in (config_path, tokenizer_path):
        if not path.is_file():
            raise DraftIncompatibleError(f"{folder} has no {path.name}")
    config = json.loads(config_path.read_text())
    text_config = config.get("text_config", config)
    return VocabularyFingerprint(
        vocab_size=int(text_config["vocab_size"]),
        tokenizer_sha256=tokenizer_sha256(tokenizer_path),
        bos_token_id=_first_int(text_config.get("bos_token_id")),
        eos_token_id=_first_int(text_config.get("eos_token_id")),
        pad_token_id=_first_int(text_config.get("pad_token_id")),
    )


def tokenizer_sha256(path: Path) -> str:
    """Hash of the tokenizer's model, added tokens and normalisation (not formatting)."""
    data = json.loads(path.read_text())
    keep = {k: data.get(k) for k in ("model", "added_tokens", "normalizer", "pre_tokenizer")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()


def check_compatible(target_dir: Path, draft_dir: Path) -> None:
    """Raise ``DraftIncompatibleError`` naming each difference; return when they match."""
    diffs = fingerprint(target_dir).differences(fingerprint(draft_dir))
    if diffs:
        raise DraftIncompatibleError(
            f"draft {draft_dir} cannot speculate for {target_dir}: " + "; ".join(diffs)
        )


def read_card(folder: Path) -> dict[str, Any]:
    path = folder / CARD_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a draft folder (no {CARD_NAME})")
    card: dict[str, Any] = json.loads(path.read_text())
    if card.get("format") != CARD_FORMAT:
        raise ValueError(f"{path}: unknown format {card.get('format')!r}")
    return card


def write_card(folder: Path, card: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CARD_NAME
    path.write_text(json.dumps({"format": CARD_FORMAT, **card}, indent=2) + "\n")
    return path
