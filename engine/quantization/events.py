"""The worker's progress protocol: one JSON object per stdout line.

``{"event": "progress", "stage": str, "done": int, "total": int}`` while it works and
``{"event": "result", "record": {...}}`` at the end. Other lines are ignored by the reader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Progress:
    stage: str
    done: int
    total: int

    def __post_init__(self) -> None:
        if self.total < 1 or not 0 <= self.done <= self.total:
            raise ValueError(f"bad progress {self.done}/{self.total}")


def emit(stage: str, done: int, total: int) -> None:
    line = {"event": "progress", "stage": stage, "done": done, "total": total}
    print(json.dumps(line), flush=True)


def parse(line: str) -> Progress | dict[str, Any] | None:
    """A ``Progress``, the result record (a dict), or None for any other line."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    if data.get("event") == "progress":
        return Progress(str(data["stage"]), int(data["done"]), int(data["total"]))
    if data.get("event") == "result" and isinstance(data.get("record"), dict):
        return dict(data["record"])
    return None
