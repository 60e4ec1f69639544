"""The models this gateway serves: name -> engine and prompt renderer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from engine.protocol import Engine
from gateway.errors import ModelNotFoundError, ServiceUnavailableError
from gateway.serving.rendering import PromptRenderer

Task = Literal["generate", "embed"]
NOT_READY_RETRY_AFTER_S = 10  # a model without a ready engine: loading, restarting, scaling


@dataclass(frozen=True)
class ServedModel:
    name: str
    engine: Engine
    renderer: PromptRenderer
    created: int = 0  # when the model was prepared (Unix time), as /v1/models reports
    tool_parser: str | None = None  # vLLM's tool parser for tool_choice auto
    task: Task = "generate"  # or "embed": a pooling model behind /v1/embeddings
    embedding_dimensions: tuple[int, ...] = ()  # sizes a Matryoshka model can shorten to

    @property
    def max_model_len(self) -> int:
        return self.engine.max_model_len

    @property
    def tokenizer(self) -> Any:
        """The tokenizer behind the renderer (tool parsers read it)."""
        return getattr(self.renderer, "tokenizer", self.renderer)


class ModelRegistry:
    def __init__(self, models: list[ServedModel]) -> None:
        self._models = {m.name: m for m in models}
        if len(self._models) != len(models):
            raise ValueError("model names must be unique")

    def get(self, name: str) -> ServedModel:
        model = self._models.get(name)
        if model is None:
            raise ModelNotFoundError(
                f"The model '{name}' does not exist or you do not have access to it.",
                param="model",
            )
        return model

    async def serving(self, name: str) -> ServedModel:
        """``get``, refusing with a 503 (``Retry-After``) while the model has no ready engine.

        Other models keep serving: only requests for this one are refused, before any ticket
        is opened or ledger row written.
        """
        model = self.get(name)
        if not await model.engine.is_ready():
            raise ServiceUnavailableError(
                f"The model '{name}' has no ready replica yet (loading or restarting); "
                "retry later.", code="model_not_ready", retry_after=NOT_READY_RETRY_AFTER_S)
        return model

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())

    async def start(self) -> None:
        for model in self:
            await model.engine.start()

    async def stop(self) -> None:
        for model in self:
            await model.engine.stop()

    async def all_ready(self) -> bool:
        return all([await model.engine.is_ready() for model in self])
