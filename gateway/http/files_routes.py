"""``/v1/files``: upload batch input, read batch output (OpenAI's Files API, purpose batch).

A key sees its tenant's files only; the admin key sees every tenant's. An upload is
authenticated, and its declared size (``Content-Length``) checked against
``batches.max_file_bytes`` and the tenant's quota, before a byte of its body is read: the
route declares no form parameters (FastAPI would parse and spool the whole form before any
dependency ran) and reads the multipart stream itself (``gateway.http.upload_form``), the
file's content going into the database chunk by chunk as it arrives, nothing spooled to
disk. Content is streamed back the same way. ``expires_after`` (``{"anchor": "created_at",
"seconds": 3600..2592000}``) makes it expire: gone from then on, deleted by the batch worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from gateway.batches.service import Batches
from gateway.errors import InvalidRequestError, NotFoundError, RequestTooLargeError
from gateway.http.state import GatewayState, gateway_state, principal_of
from gateway.http.upload_form import UploadForm
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


FORM_BYTES = 64 * 1024  # an upload's multipart framing and fields beside its file, at most
UPLOAD_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["file", "purpose"], "properties": {
        "file": {"type": "string", "format": "binary"},
        "purpose": {"type": "string", "enum": ["batch"]},
        "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
        "expires_after[seconds]": {"type": "integer"}}}}}}}


def declared_file_bytes(request: Request, limit: int) -> int | None:
    """The least the file can weigh given the body's ``Content-Length`` (None: no length
    declared; the size is then checked as the content arrives). A 413 past ``limit``."""
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        return None
    at_least = max(0, int(length) - FORM_BYTES)
    if at_least > limit:
        raise RequestTooLargeError(f"files are limited to {limit} bytes")
    return at_least


def form_terms(fields: dict[str, str], final: bool) -> int | None:
    """The purpose and ``expires_after`` the form gave (``final``: the whole form was read,
    so a missing purpose is an error); returns the expiry in seconds."""
    purpose = fields.get("purpose")
    if purpose is None and final:
        raise InvalidRequestError("purpose is required", param="purpose")
    if purpose is not None and purpose != "batch":
        raise InvalidRequestError("only purpose 'batch' is supported", param="purpose")
    seconds = fields.get("expires_after[seconds]")
    if seconds is not None and not seconds.strip().isdigit():
        raise InvalidRequestError("expires_after.seconds must be an integer",
                                  param="expires_after.seconds")
    return expiry_s(fields.get("expires_after[anchor]"),
                    None if seconds is None else int(seconds))


async def _checked(form: UploadForm) -> AsyncIterator[bytes]:
    """The file's content; once the form is read whole, its terms are checked (an error
    then rolls the stored chunks back)."""
    async for piece in form.file_pieces():
        yield piece
    form_terms(form.fields, final=True)


@router.post("", openapi_extra=UPLOAD_FORM)
async def upload_file(
    request: Request,
    principal: Principal = Depends(principal_of),  # first: nothing is read before the key
    batches: Batches = Depends(batches_of),
) -> dict[str, Any]:
    settings = batches.settings
    declared = declared_file_bytes(request, settings.max_file_bytes)
    if declared is not None:
        await batches.files.check_quota(principal.tenant, declared,
                                        settings.max_tenant_file_bytes)
    form = UploadForm(request.headers.get("content-type", ""), request.stream())
    filename = await form.until_file()  # the fields before it: a bad purpose fails here
    form_terms(form.fields, final=False)
    info = await batches.files.upload(
        principal.tenant, filename, "batch", _checked(form), limit=settings.max_file_bytes,
        expires_after_s=lambda: form_terms(form.fields, final=True),
        quota=settings.max_tenant_file_bytes)
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
