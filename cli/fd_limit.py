"""The process's open-file limit, raised to what serving needs.

Each connection is a file descriptor. Many systems start processes with a soft limit of
1024 (the hard limit is higher), below the connections the gateway is set to hold: past it
``accept`` fails and every client, the probes too, is refused until a socket closes.
"""

from __future__ import annotations

import logging
import resource

logger = logging.getLogger("uvicorn.error")


def raise_open_files(needed: int) -> int:
    """Raise the soft ``RLIMIT_NOFILE`` towards ``needed`` (never past the hard limit, never
    down); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        logger.warning("open files limited to %d (hard limit); serving wants %d", target, needed)
    return target
