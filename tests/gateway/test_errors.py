"""The one mapping to the error envelope: request errors keep their field, a request too
deep for the code is a 400 and not a 500, and echoed client text always encodes."""

from __future__ import annotations

import json

import httpx
from fastapi import FastAPI
from starlette.exceptions import HTTPException

from engine.errors import EngineRequestError
from gateway.errors import as_gateway_error, error_envelope, install_error_handlers


def test_engine_request_error_when_mapped_then_a_400_keeping_its_param() -> None:
    error = as_gateway_error(EngineRequestError("seed out of range", "seed"))
    assert (error.status_code, error.param) == (400, "seed")


def test_recursion_error_when_mapped_then_a_400_naming_nothing_internal() -> None:
    error = as_gateway_error(RecursionError("maximum recursion depth exceeded"))
    assert error.status_code == 400 and "recursion" not in error.message


def test_envelope_when_client_text_holds_a_lone_surrogate_then_it_encodes_as_utf8() -> None:
    body = error_envelope("bad field \ud800", "invalid_request_error", param="\udfff")
    text = json.dumps(body, ensure_ascii=False).encode("utf-8")  # raised before
    assert json.loads(text)["error"]["param"] == "\\udfff"


async def test_body_parsing_when_json_recursion_fails_then_400_envelope() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/deep")
    async def deep() -> None:  # what FastAPI raises when json.loads recursed too deep
        raise HTTPException(400, "There was an error parsing the body") from RecursionError()

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://t") as client:
        response = await client.post("/deep")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["error"]["message"]
