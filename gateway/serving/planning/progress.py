"""Which request field planning is working on: named when planning it costs too much.

A planner calls ``mark`` with a field's name before the work that field causes (checking
a schema, rendering the messages, tokenising a prompt); a request stopped at its time
limit is refused naming the last field marked.
"""

from __future__ import annotations

from collections.abc import Callable

Mark = Callable[[str], None]


def unmarked(param: str) -> None:
    """No one watches this planning (light requests planned on the event loop)."""
    del param


class Progress:
    """The last field marked; written by the planning thread, read when it overruns."""

    def __init__(self) -> None:
        self.param: str | None = None

    def mark(self, param: str) -> None:
        self.param = param
