"""``/v1/batches``: create, retrieve, list and cancel batches (OpenAI's Batch API).

Creating a batch validates its whole input file first; a file with any bad line gives a
``failed`` batch whose ``errors`` name each line. The worker runs the rest in the background.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from gateway.batches.service import Batches
from gateway.batches.store import BatchView, NewBatch
from gateway.errors import InvalidRequestError, NotFoundError
from gateway.http.files_routes import batches_of, scope
from gateway.http.state import principal_of
from gateway.serving.accounting import Principal

router = APIRouter(prefix="/v1/batches")


class BatchCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(min_length=1, max_length=64)
    endpoint: Literal["/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = Field(None, max_length=16)


async def _batch(batches: Batches, batch_id: str, principal: Principal) -> BatchView:
    view = await batches.store.get(batch_id, scope(principal))
    if view is None:
        raise NotFoundError(f"No such Batch object: {batch_id}", param="batch_id")
    return view


@router.post("")
async def create_batch(
    body: BatchCreateBody,
    batches: Batches = Depends(batches_of),
    principal: Principal = Depends(principal_of),
) -> dict[str, Any]:
    source = await batches.files.get(body.input_file_id, scope(principal))
    if source is None or source.purpose != "batch":
        raise NotFoundError(f"No such batch input file: {body.input_file_id}",
                            param="input_file_id")
    key_id = None if principal.is_admin else principal.key_id
    spec = NewBatch(principal.tenant, key_id, body.endpoint, source.id, body.metadata)
    return (await batches.create(spec)).as_json()


@router.get("")
async def list_batches(
    limit: int = 20,
    after: str | None = None,
    batches: Batches = Depends(batches_of),
    principal: Principal = Depends(principal_of),
) -> dict[str, Any]:
    views = await batches.store.page(scope(principal), max(1, min(limit, 100)) + 1, after)
    page = views[: max(1, min(limit, 100))]
    data = [v.as_json() for v in page]
    return {"object": "list", "data": data, "has_more": len(views) > len(page),
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}


@router.get("/{batch_id}")
async def retrieve_batch(
    batch_id: str,
    batches: Batches = Depends(batches_of),
    principal: Principal = Depends(principal_of),
) -> dict[str, Any]:
    return (await _batch(batches, batch_id, principal)).as_json()


@router.post("/{batch_id}/cancel")
async def cancel_batch(
    batch_id: str,
    batches: Batches = Depends(batches_of),
    principal: Principal = Depends(principal_of),
) -> dict[str, Any]:
    view = await _batch(batches, batch_id, principal)
    if not await batches.store.set_status(batch_id, "cancelling", ("in_progress",)):
        raise InvalidRequestError(f"a batch that is {view.row.status} cannot be cancelled",
                                  param="batch_id")
    return (await _batch(batches, batch_id, principal)).as_json()
