"""JSON bodies are checked on their bytes before any route parses them: too deep, NaN or
Infinity, or a lone surrogate is a 400 naming the top-level field on every JSON route."""

from __future__ import annotations

import json

import httpx
import pytest

from engine.fake import FakeEngine
from gateway.app import create_app
from gateway.http.json_body import is_json
from tests.conftest import ADMIN_KEY, MODEL, fake_state, make_settings
from tests.gateway.http.test_openai_routes import assert_envelope

BASE = {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
ROUTES = ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings",
          "/v1/batches", "/admin/keys", "/admin/tenants"]


def client_of(**limits: object) -> httpx.AsyncClient:
    settings = make_settings()
    settings = settings.model_copy(update={"limits": settings.limits.model_copy(update=limits)})
    app = create_app(fake_state(FakeEngine(model_name=MODEL), settings), manage_engines=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                             headers={"authorization": f"Bearer {ADMIN_KEY}",
                                      "content-type": "application/json"})


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def raw(**fields: str) -> str:
    """The base body with ``fields`` as raw JSON text (what json.dumps would refuse)."""
    text = json.dumps(BASE)[:-1]
    return text + "".join(f', "{name}": {value}' for name, value in fields.items()) + "}"


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("body", "param"), [
    (raw(chat_template_kwargs='{"a": ' + nested(100) + "}"), "chat_template_kwargs"),
    (raw(response_format=nested(5000)), "response_format"),  # past Python's recursion
    (raw(temperature="NaN"), "temperature"),
    (raw(logit_bias='{"1": -Infinity}'), "logit_bias"),
    (raw(stop='"\\ud800"'), "stop"),
    (raw(**{"\\udfff": "1"}), "\\udfff"),  # an unknown field named by half a pair
])
async def test_body_when_hostile_then_400_naming_the_top_level_field_on_every_route(
    route: str, body: str, param: str
) -> None:
    async with client_of() as client:
        error = assert_envelope(await client.post(route, content=body), 400, param)
    assert error["type"] == "invalid_request_error"


async def test_body_when_nested_to_the_bound_then_accepted_and_one_more_level_refused(
) -> None:
    deep_ok = raw(chat_template_kwargs='{"a": ' + nested(62) + "}")  # 1 + 1 + 62 = 64
    deep_no = raw(chat_template_kwargs='{"a": ' + nested(63) + "}")
    async with client_of() as client:
        assert (await client.post("/v1/chat/completions", content=deep_ok)).status_code == 200
        assert_envelope(await client.post("/v1/chat/completions", content=deep_no), 400,
                        "chat_template_kwargs")


async def test_depth_when_the_setting_is_lowered_then_the_bound_follows_it() -> None:
    body = raw(chat_template_kwargs='{"a": ' + nested(10) + "}")
    async with client_of(max_json_depth=8) as client:
        error = assert_envelope(await client.post("/v1/chat/completions", content=body), 400,
                                "chat_template_kwargs")
    assert "8 levels" in error["message"]


async def test_strings_that_look_hostile_when_inside_strings_then_accepted() -> None:
    text = 'NaN Infinity [[[[[[[[[[ \\\\ud800 \\" {{{{'
    body = json.dumps({**BASE, "messages": [{"role": "user", "content": text * 20}]})
    async with client_of(max_json_depth=8) as client:
        response = await client.post("/v1/chat/completions", content=body)
    assert response.status_code == 200, response.text


async def test_a_large_body_when_nested_too_deep_then_refused_off_the_event_loop() -> None:
    filler = [{"role": "user", "content": "x" * 1000}] * 100  # over the inline 64 KiB
    body = json.dumps({**BASE, "messages": filler})[:-1] + ', "x": ' + nested(200) + "}"
    async with client_of() as client:
        assert_envelope(await client.post("/v1/chat/completions", content=body), 400, "x")


@pytest.mark.parametrize(("method", "content_type", "checked"), [
    ("POST", b"application/json", True),
    ("POST", b"application/json; charset=utf-8", True),
    ("PATCH", b"application/merge-patch+json", True),
    ("POST", None, True),  # none declared: checked all the same
    ("POST", b"multipart/form-data; boundary=x", False),  # file uploads are not JSON
    ("POST", b"text/plain", False),
    ("GET", b"application/json", False),
])
def test_is_json_when_a_request_arrives_then_only_json_bodies_are_checked(
    method: str, content_type: bytes | None, checked: bool
) -> None:
    headers = [] if content_type is None else [(b"content-type", content_type)]
    assert is_json({"type": "http", "method": method, "headers": headers}) is checked
