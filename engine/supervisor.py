"""Keeps an in-process engine alive: a dead engine is rebuilt without a gateway restart.

While it is down, ``is_ready`` is false (``/ready`` answers 503) and requests get a 503
with ``Retry-After``; in-flight streams end with an error event, never hang.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger("llm_gateway.engine.supervisor")


class Restartable(Protocol):
    @property
    def model_name(self) -> str: ...

    def is_dead(self) -> bool: ...

    async def restart(self) -> None: ...


async def supervise(
    engine: Restartable, check_every_s: float = 1.0, max_backoff_s: float = 60.0
) -> None:
    """Run until cancelled: restart ``engine`` whenever it dies, backing off on failures."""
    backoff = check_every_s
    while True:
        await asyncio.sleep(check_every_s)
        if not engine.is_dead():
            backoff = check_every_s
            continue
        log.error("engine for %s died; restarting it", engine.model_name)
        try:
            await engine.restart()
        except Exception:
            log.exception("restarting the engine for %s failed; retrying in %.0f s",
                          engine.model_name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff_s)
        else:
            log.warning("engine for %s is back", engine.model_name)
