"""The embeddings request (``POST /v1/embeddings``), as OpenAI defines it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictInt, StrictStr

from gateway.openai.tool_bodies import Body

TokenId = Annotated[StrictInt, Field(ge=0)]


class EmbeddingsRequest(Body):
    model: StrictStr = Field(min_length=1)
    input: StrictStr | list[StrictStr] | list[TokenId] | list[list[TokenId]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[StrictInt, Field(ge=1)] | None = None
    user: StrictStr | None = None
