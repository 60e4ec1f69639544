"""When a model cannot answer, the next one on its ``fallbacks`` list may: before the first
token only, so a client never sees two models in one answer.

Worth another model: the model is unavailable or overloaded (a 503, no ready replica, an
upstream that failed or rate-limits us), or the prompt does not fit its context. Not worth
it: anything about the request itself or about its caller (a 400, the key's own limits and
budget, a model the key may not use) and the gateway's own ledger being down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.errors import EngineUnavailableError
from gateway.errors import (
    ContextLengthError,
    MeteringUnavailableError,
    ServiceUnavailableError,
    UpstreamError,
    UpstreamRejectedError,
)


def worth_another_model(exc: BaseException) -> bool:
    if isinstance(exc, MeteringUnavailableError):
        return False
    if isinstance(exc, UpstreamRejectedError):
        return exc.status_code == 429  # the upstream's limit, not the client's
    return isinstance(exc, ServiceUnavailableError | UpstreamError | ContextLengthError
                      | EngineUnavailableError)


@dataclass(frozen=True)
class Fallbacks:
    """Each model's ordered fallbacks (other served models or upstreams)."""

    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for model, others in self.routes.items():
            if model in others or len(set(others)) != len(others):
                raise ValueError(f"{model}: fallbacks must be other models, each once")

    def chain(self, model: str) -> tuple[str, ...]:
        """The model, then its fallbacks, in the order they are tried."""
        return (model, *self.routes.get(model, ()))
