"""An embedding model's pooling request on vLLM's ``AsyncLLM`` (its pooling runner)."""

from __future__ import annotations

from typing import Any

from engine.errors import EngineRequestError
from engine.protocol import EmbeddingOutput, EmbeddingRequest


async def pool(llm: Any, request: EmbeddingRequest) -> EmbeddingOutput:
    """One input's embedding: the engine's token count and its pooled (normalised) vector."""
    from vllm.exceptions import VLLMClientError
    from vllm.inputs import TokensPrompt
    from vllm.pooling_params import PoolingParams

    prompt: Any = TokensPrompt(prompt_token_ids=list(request.prompt_token_ids))
    params = PoolingParams(task="embed", dimensions=request.dimensions)
    final = None
    try:
        async for out in llm.encode(prompt, params, request.request_id,
                                    priority=request.priority):
            final = out
    except (VLLMClientError, ValueError) as exc:
        raise EngineRequestError(str(exc), getattr(exc, "parameter", None)) from exc
    if final is None or not final.finished:
        raise EngineRequestError(f"request {request.request_id} ended without an embedding")
    vector = [float(v) for v in final.outputs.data.tolist()]
    return EmbeddingOutput(request.request_id, len(final.prompt_token_ids), tuple(vector))
