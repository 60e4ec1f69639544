"""What a request run reports while it streams and when it settles.

``RequestRun`` calls ``output`` for each engine output and ``settled`` once, with the
``Outcome`` and the ticket's ``Settled`` (its cost when the ledger prices it).
``NO_OBSERVER`` is the do-nothing default; ``MetricsObserver`` feeds Prometheus and
writes one structured log line per request.
"""

from __future__ import annotations

import logging
import time
from decimal import Decimal
from typing import Protocol

from engine.protocol import EngineOutput
from gateway.observability.metrics import GatewayMetrics
from gateway.serving.accounting import Outcome, Settled

log = logging.getLogger("llm_gateway.requests")


class RunObserver(Protocol):
    def output(self, out: EngineOutput) -> None: ...

    def settled(self, outcome: Outcome, settled: Settled) -> None: ...


class _NoObserver:
    def output(self, out: EngineOutput) -> None:
        del out

    def settled(self, outcome: Outcome, settled: Settled) -> None:
        del outcome, settled


NO_OBSERVER: RunObserver = _NoObserver()


class MetricsObserver:
    """One request's observations, labelled by model and (bounded) tenant."""

    def __init__(self, metrics: GatewayMetrics, request_id: str, model: str, tenant: str) -> None:
        self._m = metrics
        self._request_id = request_id
        self._model = model
        self._tenant = tenant
        self._last_step: float | None = None
        self._itl = metrics.itl.labels(model)  # once: ``output`` runs for every token

    def output(self, out: EngineOutput) -> None:
        """Inter-token latency: the gap since the previous step, per token of this step."""
        tokens = max((len(d.token_ids) for d in out.choices), default=0)
        if tokens == 0:
            return
        now = time.monotonic()
        if self._last_step is not None:
            self._itl.observe((now - self._last_step) / tokens)
        self._last_step = now

    def settled(self, outcome: Outcome, settled: Settled) -> None:
        m, model, tenant = self._m, self._model, self._tenant
        usage = outcome.usage
        m.requests.labels(model, tenant, outcome.status).inc()
        m.latency.labels(model).observe(outcome.latency_s)
        if outcome.ttft_s is not None:
            m.ttft.labels(model).observe(outcome.ttft_s)
        m.prompt_tokens.labels(model, tenant).inc(usage.prompt_tokens)
        m.completion_tokens.labels(model, tenant).inc(usage.completion_tokens)
        m.cached_tokens.labels(model, tenant).inc(usage.cached_tokens)
        if usage.cached_tokens:
            m.cache_hits.labels(model).inc()
        if outcome.speculation is not None:
            m.spec_drafted.labels(model).inc(outcome.speculation.drafted)
            m.spec_accepted.labels(model).inc(outcome.speculation.accepted)
        self._log(outcome, settled.cost)  # cost is counted by metering, from the ledger

    def _log(self, outcome: Outcome, cost: Decimal | None) -> None:
        log.info("request finished", extra={
            "request_id": self._request_id, "model": self._model, "tenant": self._tenant,
            "status": outcome.status, "prompt_tokens": outcome.usage.prompt_tokens,
            "completion_tokens": outcome.usage.completion_tokens,
            "cached_tokens": outcome.usage.cached_tokens,
            "ttft_s": None if outcome.ttft_s is None else round(outcome.ttft_s, 4),
            "latency_s": round(outcome.latency_s, 4),
            "cost": None if cost is None else str(cost),
        })
