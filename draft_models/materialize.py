"""Turn a shipped draft (trained tensors + card) into a folder vLLM loads.

The shipped form holds only what training changed; the embeddings and head come from
the target itself, so the draft is re-tied to exactly the weights it was trained with.
The card names the draft's kind, and the kind's recipe writes the folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from draft_models.kinds import kind_of_card
from draft_models.recipes import recipe_for
from draft_models.registry import (
    CARD_NAME,
    DraftIncompatibleError,
    check_compatible,
    fingerprint,
    read_card,
)

_MARKER = "llm-gateway-draft.json"


def draft_dir_name(card: Mapping[str, Any]) -> str:
    """The folder under the model cache a shipped draft installs into."""
    return kind_of_card(card).installed_name(card)


def materialize(shipped: Path, target_dir: Path, cache: Path) -> Path:
    """Write ``<cache>/<target>-draft-<n>l`` (or ``-eagle``) once per shipped version."""
    card = read_card(shipped)
    kind = kind_of_card(card)
    weights = shipped / kind.weights_file
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    if digest != card["files"][weights.name]:
        raise ValueError(f"{weights} does not match its card (sha256 {digest[:12]})")
    expected = card["target"]["tokenizer_sha256"]
    actual = fingerprint(target_dir).tokenizer_sha256
    if expected != actual:
        raise DraftIncompatibleError(
            f"{shipped} was trained for tokenizer {expected[:12]}, target has {actual[:12]}"
        )
    dest = cache / kind.installed_name(card)
    marker = dest / _MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("layers_sha256") == digest:
        return dest
    recipe_for(kind).materialize(shipped, card, target_dir, dest)
    (dest / CARD_NAME).write_text((shipped / CARD_NAME).read_text())
    marker.write_text(json.dumps({"layers_sha256": digest, "shipped": str(shipped)}, indent=2))
    check_compatible(target_dir, dest)
    return dest
