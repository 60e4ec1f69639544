"""The failed-auth throttle through a real reverse-proxy hop: a uvicorn gateway process
behind a loopback proxy that adds ``X-Forwarded-For`` (as an ingress controller does), with
clients on distinct loopback addresses. The gateway trusts the proxy's address
(``forwarded_allow_ips``), so each client's failures are its own; a key that verifies is
always served, from a throttled address too, and even when the proxy is not trusted."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ADMIN_KEY
from tests.gateway.auth.reverse_proxy import ReverseProxy
from tests.gateway.conftest import sqlite_url
from tests.gateway.fake_gateway_process import start_fake_gateway

LIMIT = 3
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
BAD = {"authorization": "Bearer sk-gw-0123456789ab.wrong"}


def _gateway(folder: Path, trusted: str | None) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    env = {"LLMGW_AUTH__FAILED_AUTH_LIMIT": str(LIMIT)}
    if trusted is not None:
        env["LLMGW_FORWARDED_ALLOW_IPS"] = trusted
    process, base = start_fake_gateway(sqlite_url(folder), folder / "gateway.log", 0.0, env)
    try:
        yield process, base
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def trusting(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A gateway with the default setting: the loopback proxy is trusted."""
    yield from _gateway(tmp_path, None)


@pytest.fixture
def distrusting(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A gateway that trusts another network's proxies only."""
    yield from _gateway(tmp_path, '["10.0.0.0/8"]')


@pytest.fixture
async def proxied(trusting: tuple[subprocess.Popen[bytes], str]) -> AsyncIterator[str]:
    async with ReverseProxy(int(trusting[1].rsplit(":", 1)[1])).running() as base:
        yield base


def client(base: str, address: str) -> httpx.AsyncClient:
    """A client whose connections come from ``address`` (a loopback address)."""
    return httpx.AsyncClient(base_url=base, timeout=30,
                             transport=httpx.AsyncHTTPTransport(local_address=address))


async def _key(base: str) -> dict[str, str]:
    async with client(base, "127.0.0.9") as admin:
        made = await admin.post("/admin/keys", json={"tenant": "acme"}, headers=ADMIN)
    assert made.status_code == 201, made.text
    return {"authorization": f"Bearer {made.json()['key']}"}


async def _codes(session: httpx.AsyncClient, count: int) -> list[int]:
    return [(await session.get("/v1/models", headers=BAD)).status_code for _ in range(count)]


async def test_behind_a_trusted_proxy_when_one_address_guesses_then_only_it_gets_429s(
    proxied: str, trusting: tuple[subprocess.Popen[bytes], str],
) -> None:
    valid = await _key(proxied)
    async with client(proxied, "127.0.0.2") as a, client(proxied, "127.0.0.3") as b:
        assert await _codes(a, LIMIT + 2) == [401] * LIMIT + [429, 429]
        assert await _codes(b, LIMIT) == [401] * LIMIT  # another client: its own budget
        # A key that verifies passes through the same proxy, from the throttled address too.
        for _ in range(3):
            assert (await a.get("/v1/models", headers=valid)).status_code == 200
            assert (await a.get("/admin/keys", headers=ADMIN)).status_code == 200
            assert (await b.get("/v1/models", headers=valid)).status_code == 200
        assert await _codes(a, 1) == [429]  # its failures are still throttled
    direct = trusting[1]
    async with client(direct, "127.0.0.2") as a_direct:
        # The gateway counted 127.0.0.2 (the forwarded client), not the proxy's address.
        assert await _codes(a_direct, 1) == [429]
    async with client(direct, "127.0.0.4") as spoofer:
        # An untrusted peer's X-Forwarded-For is ignored: no fresh address per guess.
        codes = [(await spoofer.get("/v1/models", headers={
            **BAD, "x-forwarded-for": f"198.51.100.{i}"})).status_code for i in range(LIMIT + 1)]
        assert codes == [401] * LIMIT + [429]


async def test_behind_an_untrusted_proxy_when_guessed_then_failures_share_a_budget_and_keys_pass(
    distrusting: tuple[subprocess.Popen[bytes], str],
) -> None:
    upstream = distrusting[1]
    valid = await _key(upstream)
    async with (ReverseProxy(int(upstream.rsplit(":", 1)[1])).running() as proxied,
                client(proxied, "127.0.0.2") as a, client(proxied, "127.0.0.3") as b):
        assert await _codes(a, LIMIT) == [401] * LIMIT
        assert await _codes(b, 1) == [429]  # every client looks like the proxy
        assert (await b.get("/v1/models", headers=valid)).status_code == 200
        assert (await a.get("/admin/keys", headers=ADMIN)).status_code == 200


def test_forwarded_allow_ips_when_not_an_address_or_network_then_the_settings_refuse_it(
) -> None:
    from pydantic import ValidationError

    from gateway.settings import Settings

    assert Settings(forwarded_allow_ips=[" 10.0.0.0/8", "::1"]).forwarded_allow_ips == [
        "10.0.0.0/8", "::1"]
    for wrong in ("*", "10.0.0.0/33", "ingress.local"):
        with pytest.raises(ValidationError):
            Settings(forwarded_allow_ips=[wrong])
