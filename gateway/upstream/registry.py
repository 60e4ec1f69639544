"""The upstream models this gateway relays to, by the name clients use."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from gateway.settings import Settings
from gateway.upstream.client import UpstreamClient, UpstreamModel


@dataclass(frozen=True)
class Upstream:
    model: UpstreamModel
    client: UpstreamClient


class UpstreamRegistry:
    def __init__(self, upstreams: list[Upstream] | None = None) -> None:
        self._upstreams = {u.model.name: u for u in upstreams or []}

    @classmethod
    def from_settings(cls, settings: Settings) -> UpstreamRegistry:
        """Each ``upstreams:`` entry; loads its tiktoken encoding (offline) now."""
        models = [UpstreamModel.from_settings(name, upstream)
                  for name, upstream in settings.upstreams.items()]
        return cls([Upstream(model, UpstreamClient(model)) for model in models])

    def find(self, name: str) -> Upstream | None:
        return self._upstreams.get(name)

    def __iter__(self) -> Iterator[Upstream]:
        return iter(self._upstreams.values())

    async def aclose(self) -> None:
        for upstream in self:
            await upstream.client.aclose()
