"""An embeddings body to a plan: each input as the token ids the model's encoder reads.
``build_embedding_plan`` is plain CPU work, run where ``gateway/serving/offload`` decides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.errors import ContextLengthError, InvalidRequestError
from gateway.openai.embedding_bodies import EmbeddingsRequest
from gateway.serving.planning.inputs import as_inputs
from gateway.serving.planning.progress import Mark, unmarked
from gateway.settings import LimitSettings

Encoding = Literal["float", "base64"]


class InputEncoder(Protocol):
    """An embedding model's tokenizer, special tokens included ([CLS] ... [SEP])."""

    @property
    def vocab_size(self) -> int: ...

    def encode_input(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class EmbeddingPlan:
    model: str
    inputs: tuple[tuple[int, ...], ...]
    encoding: Encoding = "float"
    dimensions: int | None = None
    user: str | None = None

    def __post_init__(self) -> None:
        if not self.inputs or not all(self.inputs):
            raise ValueError("an embedding plan needs non-empty inputs")

    @property
    def prompt_tokens(self) -> int:
        return sum(len(i) for i in self.inputs)

    @property
    def choices(self) -> int:
        return len(self.inputs)

    @property
    def completion_budget(self) -> int:
        return 0  # an embedding generates nothing

    @property
    def worst_case_tokens(self) -> int:
        return self.prompt_tokens

    @property
    def sequences(self) -> int:
        return 1  # one forward pass per input, none held while others decode

    @property
    def fanout_param(self) -> str:
        return "input"


def _ids(item: str | list[int], encoder: InputEncoder, param: str) -> tuple[int, ...]:
    if isinstance(item, str):
        if not item:
            raise InvalidRequestError("an input must not be empty", param=param)
        return tuple(encoder.encode_input(item))
    if not item or any(i >= encoder.vocab_size for i in item):
        raise InvalidRequestError(f"token ids must be in [0, {encoder.vocab_size})",
                                  param=param)
    return tuple(item)


def build_embedding_plan(body: EmbeddingsRequest, encoder: InputEncoder, context: int,
                         dimensions: tuple[int, ...], limits: LimitSettings,
                         mark: Mark = unmarked) -> EmbeddingPlan:
    """``dimensions``: the sizes this (Matryoshka) model can shorten to; empty: none."""
    items = as_inputs(body.input)
    if not items or len(items) > limits.max_embedding_inputs:
        raise InvalidRequestError(
            f"input must hold 1 to {limits.max_embedding_inputs} items", param="input")
    if body.dimensions is not None and body.dimensions not in dimensions:
        raise InvalidRequestError(
            f"model '{body.model}' cannot shorten its embeddings to {body.dimensions} "
            f"dimensions" + (f" (it offers {list(dimensions)})" if dimensions else ""),
            param="dimensions")
    many, inputs = len(items) > 1, []
    for i, item in enumerate(items):
        mark(f"input.{i}" if many else "input")
        inputs.append(_ids(item, encoder, f"input.{i}" if many else "input"))
    for i, ids in enumerate(inputs):
        if len(ids) > context:
            raise ContextLengthError(
                f"This model's maximum context length is {context} tokens, however input "
                f"{i} has {len(ids)} tokens.", param=f"input.{i}" if many else "input")
    return EmbeddingPlan(body.model, tuple(inputs), body.encoding_format or "float",
                         body.dimensions, body.user)


async def plan_embeddings(body: EmbeddingsRequest, encoder: InputEncoder, context: int,
                          dimensions: tuple[int, ...],
                          limits: LimitSettings) -> EmbeddingPlan:
    """``build_embedding_plan`` on the caller's event loop (a light request, a test)."""
    return build_embedding_plan(body, encoder, context, dimensions, limits)
