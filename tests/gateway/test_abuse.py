"""Abuse and leaks at the edge: guessable cache salts, key guessing, floods, internal text."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from engine.errors import EngineUnavailableError
from engine.fake import FakeEngine
from engine.protocol import EngineOutput, GenerationRequest
from gateway.app import create_app
from gateway.auth.throttle import FailedAuthThrottle
from gateway.errors import RateLimitError
from gateway.serving.salt import TenantSalt
from gateway.settings import AuthSettings, LimitSettings
from tests.conftest import ADMIN_KEY, MODEL, fake_state, make_settings

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


class SaltSeeingEngine(FakeEngine):
    """Remembers the cache salt each request carried."""

    salts: list[str | None]

    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        self.salts.append(request.cache_salt)
        async for out in super().generate(request):
            yield out


class LeakyEngine(FakeEngine):
    async def generate(self, request: GenerationRequest) -> AsyncIterator[EngineOutput]:
        raise EngineUnavailableError("replica http://10.0.0.5:8001: ConnectError(secret)")
        yield  # pragma: no cover


def client_of(engine: FakeEngine, **settings: object) -> httpx.AsyncClient:
    app = create_app(fake_state(engine, make_settings(**settings)), manage_engines=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                             headers={"authorization": f"Bearer {ADMIN_KEY}"})


def test_salt_when_derived_then_keyed_per_tenant_and_unguessable_from_its_name() -> None:
    salt = TenantSalt.from_settings(AuthSettings(admin_key=SecretStr("k" * 20)))
    assert salt("acme") == salt("acme") != salt("globex")
    assert "acme" not in salt("acme") and len(salt("acme")) == 32
    other = TenantSalt.from_settings(AuthSettings(admin_key=SecretStr("z" * 20)))
    assert other("acme") != salt("acme")  # another deployment's secret, another salt
    pinned = AuthSettings(admin_key=SecretStr("k" * 20), cache_salt_key=SecretStr("s" * 20))
    assert TenantSalt.from_settings(pinned)("acme") != salt("acme")


async def test_engine_requests_when_served_then_carry_the_hmac_salt_not_the_tenant() -> None:
    engine = SaltSeeingEngine(MODEL)
    engine.salts = []
    async with client_of(engine) as client:
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
    expected = TenantSalt.from_settings(make_settings().auth)("admin")
    assert engine.salts == [expected] and expected != "admin"


def test_throttle_when_an_address_fails_too_often_then_429_until_the_window_passes() -> None:
    now = [0.0]
    throttle = FailedAuthThrottle(3, 60, clock=lambda: now[0])
    for _ in range(3):
        throttle.failed("1.2.3.4")
    with pytest.raises(RateLimitError) as refused:
        throttle.failed("1.2.3.4")
    assert refused.value.retry_after == 60
    throttle.failed("5.6.7.8")  # another address is not affected
    now[0] = 61
    throttle.failed("1.2.3.4")


async def test_auth_when_keys_are_guessed_then_failures_get_429s_and_the_right_key_passes(
) -> None:
    auth = AuthSettings(admin_key=SecretStr(ADMIN_KEY), failed_auth_limit=3)
    async with client_of(FakeEngine(MODEL), auth=auth) as client:
        codes = [(await client.get("/v1/models", headers={"authorization": f"Bearer g{i}"})
                  ).status_code for i in range(5)]
        assert codes == [401, 401, 401, 429, 429]
        # Only failures are throttled: the right key from the same address is served, on
        # /v1 and on the admin routes alike, while a wrong one still waits out the window.
        assert (await client.get("/v1/models")).status_code == 200
        assert (await client.get("/admin/engines")).status_code == 200
        refused = await client.get("/v1/models", headers={"authorization": "Bearer g9"})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1


async def test_in_flight_when_at_the_cap_then_503_with_retry_after() -> None:
    engine = FakeEngine(MODEL, reply="x" * 50, token_delay_s=0.02)
    async with client_of(engine, limits=LimitSettings(max_in_flight=1)) as client:
        slow = asyncio.create_task(client.post("/v1/chat/completions", json=CHAT))
        await asyncio.sleep(0.2)
        refused = await client.post("/v1/chat/completions", json=CHAT)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "over_capacity"
        assert (await slow).status_code == 200


async def test_engine_failure_when_reported_then_no_address_or_exception_text_leaks() -> None:
    async with client_of(LeakyEngine(MODEL)) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
        streamed = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.status_code == 503
    for text in (response.text, streamed.text):
        assert "10.0.0.5" not in text and "ConnectError" not in text and "secret" not in text
