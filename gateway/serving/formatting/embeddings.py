"""The embeddings response: one vector per input, as floats or as base64 of float32."""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from typing import Any

from engine.protocol import EmbeddingOutput
from gateway.serving.accounting import Settled
from gateway.serving.planning.embeddings import Encoding

Json = dict[str, Any]


def encoded(vector: Sequence[float], encoding: Encoding) -> list[float] | str:
    """OpenAI's base64 form: the vector's little-endian float32 bytes."""
    if encoding == "float":
        return list(vector)
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embeddings_body(model: str, outputs: Sequence[EmbeddingOutput], encoding: Encoding,
                    settled: Settled) -> Json:
    tokens = sum(o.prompt_tokens for o in outputs)
    usage: Json = {"prompt_tokens": tokens, "total_tokens": tokens}
    if settled.cost is not None:
        usage["cost"] = float(settled.cost)
    return {"object": "list", "model": model, "usage": usage,
            "data": [{"object": "embedding", "index": i,
                      "embedding": encoded(o.embedding, encoding)}
                     for i, o in enumerate(outputs)]}
