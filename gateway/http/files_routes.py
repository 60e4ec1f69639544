"""``/v1/files``: upload batch input, read batch output (OpenAI's Files API, purpose batch).

A key sees its tenant's files only; the admin key sees every tenant's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import Response

from gateway.batches.service import Batches
from gateway.errors import InvalidRequestError, NotFoundError, RequestTooLargeError
from gateway.http.state import GatewayState, gateway_state, principal_of
from gateway.serving.accounting import Principal

router = APIRouter(prefix="/v1/files")


def batches_of(state: GatewayState = Depends(gateway_state)) -> Batches:
    if state.batches is None:
        raise NotFoundError("files and batches need metering (a ledger database)")
    return state.batches


def scope(principal: Principal) -> str | None:
    """The tenant whose objects ``principal`` may see (None: all, for the admin)."""
    return None if principal.is_admin else principal.tenant


@router.post("")
async def upload_file(
    file: UploadFile = File(...),
    purpose: str = Form(...),
    batches: Batches = Depends(batches_of),
    principal: Principal = Depends(principal_of),
) -> dict[str, Any]:
    if purpose != "batch":
        raise InvalidRequestError("only purpose 'batch' is supported", param="purpose")
    content = await file.read(batches.settings.max_file_bytes + 1)
    if len(content) > batches.settings.max_file_bytes:
        raise RequestTooLargeError(f"files are limited to {batches.settings.max_file_bytes} bytes")
    info = await batches.files.create(principal.tenant, file.filename or "input.jsonl", purpose,
                                      content)
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
) -> Response:
    content = await batches.files.content(file_id, scope(principal))
    if content is None:
        raise NotFoundError(f"No such File object: {file_id}", param="file_id")
    return Response(content, media_type="application/jsonl")


@router.delete("/{file_id}")
async def delete_file(
    file_id: str,
    batches: Batches = Depends(batches_of),
    principal: Principal = Depends(principal_of),
) -> dict[str, Any]:
    if not await batches.files.delete(file_id, scope(principal)):
        raise NotFoundError(f"No such File object: {file_id}", param="file_id")
    return {"id": file_id, "object": "file", "deleted": True}
