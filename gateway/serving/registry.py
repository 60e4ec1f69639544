"""The models this gateway serves: name -> engine and prompt renderer."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from engine.protocol import Engine
from gateway.errors import ModelNotFoundError, ServiceUnavailableError
from gateway.serving.accounting import Principal
from gateway.serving.adapters import AdapterCatalog, LoraEngine
from gateway.serving.reasoning import Reasoner
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
    # Engine sequences one engine (each replica) runs at once, its max_num_seqs: past them
    # requests wait in the gateway's fair queue (serving/queueing.py); None: no queue
    seats: int | None = None
    reasoning: Reasoner | None = None  # vLLM's reasoning parser for this model's output
    reasoning_switch: str | None = None  # the template variable reasoning_effort sets
    parent: str | None = None  # a LoRA adapter's base model (its renderer, queue and engine)

    @property
    def base_name(self) -> str:
        """The model whose renderer and fair queue this one uses (itself unless an adapter)."""
        return self.parent or self.name

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
        self.adapters = AdapterCatalog()  # LoRA adapters on these models (/admin/adapters)

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

    async def serving_for(self, name: str, principal: Principal) -> ServedModel:
        """``serving``, adapters included: one the caller may not use is a 404 as if absent."""
        if name in self._models or self.adapters.visible(name, principal) is None:
            return await self.serving(name)
        served = self.adapter_model(name)
        await self.serving(served.base_name)  # its base model's engine is ready
        return served

    def adapter_model(self, name: str) -> ServedModel:
        """A registered adapter as a model: its base's engine with the adapter attached."""
        adapter = self.adapters.get(name)
        if adapter is None:
            return self.get(name)  # the 404
        base = self.get(adapter.base_model)
        return dataclasses.replace(
            base, name=name, engine=LoraEngine(base.engine, adapter.target),
            reasoning=self.adapters.reasoning(name) or base.reasoning, parent=base.name,
            created=adapter.created)

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())

    async def stop(self) -> None:
        for model in self:
            await model.engine.stop()

    async def all_ready(self) -> bool:
        return all([await model.engine.is_ready() for model in self])
