"""Adapters shipped with the project (``engine/lora/adapters/<name>``)."""

from __future__ import annotations

from pathlib import Path

SHIPPED_ADAPTERS_DIR = Path(__file__).resolve().parent / "adapters"


def shipped_adapter(name: str) -> Path:
    """The folder of a shipped adapter (``adapter_config.json`` inside), or a FileNotFoundError."""
    folder = SHIPPED_ADAPTERS_DIR / name
    if not (folder / "adapter_config.json").is_file():
        raise FileNotFoundError(f"no shipped adapter {name!r} in {SHIPPED_ADAPTERS_DIR}")
    return folder
