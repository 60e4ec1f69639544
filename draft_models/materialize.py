"""Turn a shipped draft (trained tensors + card) into a folder vLLM loads.

The shipped form holds only what training changed; the embeddings and head come from
the target itself, so the draft is re-tied to exactly the weights it was trained with.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from draft_models.eagle3_build import ARCH_TYPE as EAGLE3_TYPE
from draft_models.eagle3_build import EAGLE3_FILE, materialize_eagle3
from draft_models.eagle_build import ARCH_TYPE, EAGLE_FILE, materialize_eagle
from draft_models.registry import (
    DraftIncompatibleError,
    check_compatible,
    fingerprint,
    read_card,
)

LAYERS_FILE = "layers.safetensors"
_HEAD_FILES = {ARCH_TYPE: EAGLE_FILE, EAGLE3_TYPE: EAGLE3_FILE}
_MARKER = "llm-gateway-draft.json"


def draft_dir_name(card: dict[str, object]) -> str:
    target = card["target"]
    arch = card["architecture"]
    assert isinstance(target, dict) and isinstance(arch, dict)
    if arch["type"] in _HEAD_FILES:
        return f"{target['name']}-{arch['method']}"
    return f"{target['name']}-draft-{arch['num_layers']}l"


def materialize(shipped: Path, target_dir: Path, cache: Path) -> Path:
    """Write ``<cache>/<target>-draft-<n>l`` (or ``-eagle``) once per shipped version."""
    card = read_card(shipped)
    kind = card["architecture"]["type"]
    layers = shipped / _HEAD_FILES.get(kind, LAYERS_FILE)
    digest = hashlib.sha256(layers.read_bytes()).hexdigest()
    if digest != card["files"][layers.name]:
        raise ValueError(f"{layers} does not match its card (sha256 {digest[:12]})")
    expected = card["target"]["tokenizer_sha256"]
    actual = fingerprint(target_dir).tokenizer_sha256
    if expected != actual:
        raise DraftIncompatibleError(
            f"{shipped} was trained for tokenizer {expected[:12]}, target has {actual[:12]}"
        )
    dest = cache / draft_dir_name(card)
    marker = dest / _MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("layers_sha256") == digest:
        return dest
    if kind == EAGLE3_TYPE:
        materialize_eagle3(shipped, card, target_dir, dest)
    elif kind == ARCH_TYPE:
        materialize_eagle(shipped, target_dir, dest)
    else:
        from draft_models.architecture import load_draft, write_hf_folder

        draft = load_draft(target_dir, layers, int(card["architecture"]["num_layers"]))
        write_hf_folder(draft, target_dir, dest)
    (dest / "draft-card.json").write_text((shipped / "draft-card.json").read_text())
    marker.write_text(json.dumps({"layers_sha256": digest, "shipped": str(shipped)}, indent=2))
    check_compatible(target_dir, dest)
    return dest
