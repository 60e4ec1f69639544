"""The report's sections, in order; each names the probes it needs and summarises them."""

from __future__ import annotations

from bench.plan import Suite
from bench.suites import batching, ceiling, overhead, peer, precision, speculation

ALL: tuple[Suite, ...] = (
    overhead.SUITE, batching.SUITE, speculation.SUITE, precision.SUITE, peer.SUITE,
    ceiling.SUITE,
)
NAMES: tuple[str, ...] = tuple(suite.name for suite in ALL)
