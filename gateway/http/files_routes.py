"""``/v1/files``: upload batch input, read batch output (OpenAI's Files API, purpose batch).

A key sees its tenant's files only; the admin key sees every tenant's. An upload is
checked for size (its declared size against ``batches.max_file_bytes`` and the tenant's
quota) before a byte of it is stored, then streamed into the database in chunks, read
from Starlette's spooled file in a thread; content is streamed back the same way.
``expires_after`` (``{"anchor": "created_at", "seconds": 3600..2592000}``) makes it
expire: gone from then on, deleted by the batch worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import StreamingResponse

from gateway.batches.files import CHUNK_BYTES
from gateway.batches.service import Batches
from gateway.errors import InvalidRequestError, NotFoundError, RequestTooLargeError
from gateway.http.state import GatewayState, gateway_state, principal_of
from gateway.serving.accounting import Principal

router = APIRouter(prefix="/v1/files")
EXPIRY_S = (3600, 30 * 86400)  # OpenAI's bounds on expires_after.seconds


def batches_of(state: GatewayState = Depends(gateway_state)) -> Batches:
    if state.batches is None:
        raise NotFoundError("files and batches need metering (a ledger database)")
    return state.batches


def scope(principal: Principal) -> str | None:
    """The tenant whose objects ``principal`` may see (None: all, for the admin)."""
    return None if principal.is_admin else principal.tenant


def expiry_s(anchor: str | None, seconds: int | None) -> int | None:
    """``expires_after``'s seconds (None: the file does not expire)."""
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequestError("expires_after.anchor must be 'created_at'",
                                  param="expires_after.anchor")
    if seconds is None or not EXPIRY_S[0] <= seconds <= EXPIRY_S[1]:
        raise InvalidRequestError(
            f"expires_after.seconds must be from {EXPIRY_S[0]} to {EXPIRY_S[1]}",
            param="expires_after.seconds")
    return seconds


async def _pieces(file: UploadFile) -> AsyncIterator[bytes]:
    while piece := await file.read(CHUNK_BYTES):  # a spooled file on disk: in a thread
        yield piece


@router.post("")
async def upload_file(
    file: UploadFile = File(...),
    purpose: str = Form(...),
    anchor: str | None = Form(None, alias="expires_after[anchor]", max_length=32),
    seconds: int | None = Form(None, alias="expires_after[seconds]"),
    batches: Batches = Depends(batches_of),
    principal: Principal = Depends(principal_of),
) -> dict[str, Any]:
    if purpose != "batch":
        raise InvalidRequestError("only purpose 'batch' is supported", param="purpose")
    expires = expiry_s(anchor, seconds)
    limit = batches.settings.max_file_bytes
    if file.size is not None and file.size > limit:
        raise RequestTooLargeError(f"files are limited to {limit} bytes")
    info = await batches.files.upload(
        principal.tenant, file.filename or "input.jsonl", purpose, _pieces(file),
        limit=limit, declared=file.size, expires_after_s=expires,
        quota=batches.settings.max_tenant_file_bytes)
    return info.as_json()


@router.get("")
async def list_files(
    purpose: str | None = None,
    limit: int = 100,
    batches: Batches = Depends(batches_of),
    principal: Principal = Depends(principal_of),
) -> dict[str, Any]:
    files = await batches.files.list(scope(principal), purpose, max(1, min(limit, 10_000)))
    return {"object": "list", "data": [f.as_json() for f in files], "has_more": False}


@router.get("/{file_id}")
async def retrieve_file(
    file_id: str,
    batches: Batches = Depends(batches_of),
    principal: Principal = Depends(principal_of),
) -> dict[str, Any]:
    info = await batches.files.get(file_id, scope(principal))
    if info is None:
        raise NotFoundError(f"No such File object: {file_id}", param="file_id")
    return info.as_json()


@router.get("/{file_id}/content")
async def file_content(
    file_id: str,
    batches: Batches = Depends(batches_of),
    principal: Principal = Depends(principal_of),
) -> StreamingResponse:
    info = await batches.files.get(file_id, scope(principal))
    if info is None:
        raise NotFoundError(f"No such File object: {file_id}", param="file_id")
    return StreamingResponse(batches.files.chunks(info.id), media_type="application/jsonl",
                             headers={"content-length": str(info.size)})


@router.delete("/{file_id}")
async def delete_file(
    file_id: str,
    batches: Batches = Depends(batches_of),
    principal: Principal = Depends(principal_of),
) -> dict[str, Any]:
    if not await batches.files.delete(file_id, scope(principal)):
        raise NotFoundError(f"No such File object: {file_id}", param="file_id")
    return {"id": file_id, "object": "file", "deleted": True}
