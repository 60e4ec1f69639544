"""Test doubles for the planning pool: renderers a worker process can import (they
pickle), and a bounded wait for a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from engine.fake import CharRenderer


class Event(Protocol):
    def set(self) -> None: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class SpinningRenderer(CharRenderer):
    """Renders forever on the CPU (pure Python, as a huge template would)."""

    def render_chat(self, prompt: Any) -> list[int]:
        while True:
            pass


class SleepingRenderer(CharRenderer):
    """Blocks without using the CPU (as code stuck where no signal reaches would)."""

    def render_chat(self, prompt: Any) -> list[int]:
        time.sleep(600)
        return []


class GatedRenderer(CharRenderer):
    """Says when it starts rendering, then waits to be let through (threading or
    multiprocessing events)."""

    def __init__(self, entered: Event, release: Event) -> None:
        self.entered, self.release = entered, release

    def render_chat(self, prompt: Any) -> list[int]:
        self.entered.set()
        if not self.release.wait(60):
            raise TimeoutError("the test never released the renderer")
        return super().render_chat(prompt)


async def until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    """Wait for ``condition``; past ``timeout_s`` a TimeoutError fails the test."""

    async def poll() -> None:
        while not condition():  # noqa: ASYNC110  (nothing announces these conditions)
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout_s)
