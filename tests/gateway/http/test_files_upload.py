"""``POST /v1/files`` reads nothing of a body before the key and the declared size pass:
counted at the ASGI ``receive`` (the bytes the app took) and on a real socket (the answer
arrives while the body is still unsent). An accepted upload goes from the stream into the
database with nothing spooled; the form's fields may come before or after the file."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette import formparsers
from starlette.types import Message

from engine.fake import FakeEngine
from gateway.app import create_app
from gateway.http.state import GatewayState
from gateway.settings import BatchSettings, Settings
from tests.conftest import ADMIN_KEY, MODEL
from tests.gateway.conftest import sqlite_url
from tests.gateway.metered import (
    ADMIN,
    create_key,
    metered_client,
    metered_settings,
    metered_state,
    metering_of,
    served,
)

MB = 1_000_000
BOUNDARY = "llmgwtestboundary"
LINE = b'{"custom_id": "r", "method": "POST", "url": "/v1/completions", "body": {}}\n'


def settings_of(tmp_path: Path, **batches: Any) -> Settings:
    return metered_settings(sqlite_url(tmp_path)).model_copy(
        update={"batches": BatchSettings(**batches)})


def form(*parts: tuple[str, bytes, str | None]) -> bytes:
    """A multipart body of (name, value, filename) parts, in order."""
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"'
                                                     if filename else "")
        out += (f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n").encode()
        out += value + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def headers(length: int, token: str | None) -> list[tuple[bytes, bytes]]:
    raw = [(b"host", b"gateway"), (b"content-length", str(length).encode()),
           (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())]
    return raw + ([(b"authorization", f"Bearer {token}".encode())] if token else [])


async def post_counting(state: GatewayState, length: int, token: str | None,
                        body: bytes | None = None) -> tuple[int, int, bytes]:
    """POST /v1/files straight into the ASGI app with a declared ``length``; the body (or
    zeros) is handed out 1 MB at a time. Returns (status, body bytes the app took, reply)."""
    app = create_app(state, manage_engines=False)
    content = body if body is not None else b"\0" * length
    taken, replies = 0, list[Message]()

    async def receive() -> Message:
        nonlocal taken
        piece = content[taken:taken + MB]
        taken += len(piece)
        return {"type": "http.request", "body": piece, "more_body": taken < len(content)}

    async def send(message: Message) -> None:
        replies.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/files", "raw_path": b"/v1/files",
             "query_string": b"", "root_path": "", "headers": headers(length, token),
             "client": ("127.0.0.1", 5000), "server": ("gateway", 80)}
    await app(scope, receive, send)
    status = next(m["status"] for m in replies if m["type"] == "http.response.start")
    reply = b"".join(m.get("body", b"") for m in replies if m["type"] == "http.response.body")
    return status, taken, reply


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[GatewayState]:
    state = metered_state(FakeEngine(MODEL), settings_of(
        tmp_path, max_file_bytes=64 * 2**20, max_tenant_file_bytes=16 * 2**20))
    await metering_of(state).start()
    yield state
    await metering_of(state).stop()


async def _token(state: GatewayState) -> str:
    app = create_app(state, manage_engines=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://gateway") as client:
        return str((await create_key(client, "acme"))["key"])


async def test_upload_of_50_mb_when_unauthenticated_then_401_and_no_byte_read(
    state: GatewayState,
) -> None:
    for token in (None, "sk-gw-0123456789ab.wrong", "not-a-key"):
        status, taken, reply = await post_counting(state, 50 * MB, token)
        assert (status, taken) == (401, 0), reply


async def test_upload_when_declared_past_the_limit_or_the_quota_then_413_and_no_byte_read(
    state: GatewayState,
) -> None:
    token = await _token(state)
    status, taken, reply = await post_counting(state, 70 * 2**20, token)  # limit: 64 MiB
    assert (status, taken) == (413, 0), reply
    status, taken, reply = await post_counting(state, 50 * MB, token)  # quota: 16 MiB
    assert (status, taken) == (413, 0) and b"file_quota_exceeded" in reply


async def test_upload_when_the_purpose_before_the_file_is_wrong_then_400_before_the_file(
    state: GatewayState,
) -> None:
    body = form(("purpose", b"fine-tune", None), ("file", LINE * 100_000, "in.jsonl"))
    status, taken, reply = await post_counting(state, len(body), ADMIN_KEY, body)
    assert status == 400 and b'"param":"purpose"' in reply.replace(b" ", b"")
    assert taken <= MB < len(body)  # the first piece only


async def test_upload_when_accepted_then_nothing_is_spooled_and_the_content_is_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_spooling(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("an upload was spooled")

    monkeypatch.setattr(formparsers, "SpooledTemporaryFile", no_spooling)
    content = LINE * 40_000  # 3 MB
    async with metered_client(FakeEngine(MODEL), settings_of(tmp_path)) as (client, _):
        key = await create_key(client, "acme")
        auth = {"authorization": f"Bearer {key['key']}"}
        made = await client.post("/v1/files", headers=auth, data={"purpose": "batch"},
                                 files={"file": ("in.jsonl", content)})
        assert made.status_code == 200, made.text
        back = await client.get(f"/v1/files/{made.json()['id']}/content", headers=auth)
    assert made.json()["bytes"] == len(content) and back.content == content
    assert made.json()["filename"] == "in.jsonl"


async def test_upload_when_the_fields_follow_the_file_then_they_apply_or_nothing_is_stored(
    tmp_path: Path,
) -> None:
    later = form(("file", LINE, "in.jsonl"), ("purpose", b"batch", None),
                 ("expires_after[anchor]", b"created_at", None),
                 ("expires_after[seconds]", b"3600", None))
    wrong = form(("file", LINE, "in.jsonl"), ("purpose", b"assistants", None))
    missing = form(("file", LINE, "in.jsonl"))
    content_type = {"content-type": f"multipart/form-data; boundary={BOUNDARY}", **ADMIN}
    async with metered_client(FakeEngine(MODEL), settings_of(tmp_path)) as (client, _):
        made = await client.post("/v1/files", headers=content_type, content=later)
        refused = [await client.post("/v1/files", headers=content_type, content=body)
                   for body in (wrong, missing)]
        listed = await client.get("/v1/files", headers=ADMIN)
    assert made.status_code == 200, made.text
    assert made.json()["expires_at"] == made.json()["created_at"] + 3600
    assert [r.status_code for r in refused] == [400, 400]
    assert [r.json()["error"]["param"] for r in refused] == ["purpose", "purpose"]
    assert [f["id"] for f in listed.json()["data"]] == [made.json()["id"]]


@pytest.mark.parametrize(("body", "content_type", "param"), [
    (form(("purpose", b"batch", None)), "multipart", "file"),
    (form(("file", LINE, "a.jsonl"), ("file", LINE, "b.jsonl"), ("purpose", b"batch", None)),
     "multipart", "file"),
    (form(("purpose", b"batch", None), ("other", LINE, "x.bin"), ("file", LINE, "a.jsonl")),
     "multipart", "other"),
    (form(("purpose", b"x" * 2000, None), ("file", LINE, "a.jsonl")), "multipart", "purpose"),
    (b"--" + BOUNDARY.encode() + b"\r\ngarbage", "multipart", "file"),
    (b'{"purpose": "batch"}', "application/json", "file"),
])
async def test_upload_when_the_form_is_wrong_then_400_naming_the_field(
    body: bytes, content_type: str, param: str, tmp_path: Path,
) -> None:
    kind = (f"multipart/form-data; boundary={BOUNDARY}" if content_type == "multipart"
            else content_type)
    async with metered_client(FakeEngine(MODEL), settings_of(tmp_path)) as (client, _):
        refused = await client.post("/v1/files", content=body,
                                    headers={"content-type": kind, **ADMIN})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == param


def _reply_before_the_body(port: int, head: bytes) -> bytes:
    """Send only ``head`` (the body it declares is never sent) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        reply = b""
        while b"\r\n\r\n" not in reply:
            piece = sock.recv(65536)
            if not piece:
                break
            reply += piece
        return reply


async def test_upload_of_50_mb_on_a_real_socket_when_unauthenticated_then_401_before_the_body(
    tmp_path: Path,
) -> None:
    async with served(FakeEngine(MODEL), settings_of(tmp_path)) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        head = (f"POST /v1/files HTTP/1.1\r\nHost: gateway\r\nContent-Length: {50 * MB}\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n").encode()
        reply = await asyncio.to_thread(_reply_before_the_body, port, head)
    assert reply.startswith(b"HTTP/1.1 401 "), reply
