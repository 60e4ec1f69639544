"""An engine that answers for another engine's model without owning it (a LoRA adapter on
its base model's engine, a cache replay in its place): the model's name and context length
are the other engine's, and starting or stopping it is the other engine's business."""

from __future__ import annotations

from engine.protocol import Engine


class EngineView:
    def __init__(self, inner: Engine) -> None:
        self._inner = inner

    @property
    def model_name(self) -> str:
        return self._inner.model_name

    @property
    def max_model_len(self) -> int:
        return self._inner.max_model_len

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
