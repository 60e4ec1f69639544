"""``llm-gateway serve`` refuses settings that would serve unsafely."""

from __future__ import annotations

from pydantic import SecretStr

from cli.serve import unsafe
from gateway.settings import AuthSettings, MeteringSettings, load_settings


def test_serve_when_auth_is_off_on_a_public_address_then_refused_unless_insisted() -> None:
    dev = load_settings(profile="dev")
    assert not dev.auth.enabled
    assert unsafe(dev, "127.0.0.1", False) is None
    assert "--insecure-no-auth" in (unsafe(dev, "0.0.0.0", False) or "")
    assert unsafe(dev, "0.0.0.0", True) is None


def test_serve_when_the_admin_key_is_short_then_refused() -> None:
    cpu = load_settings(profile="cpu")
    short = cpu.model_copy(update={"auth": AuthSettings(admin_key=SecretStr("too-short"))})
    assert "at least 16" in (unsafe(short, "0.0.0.0", False) or "")
    long = cpu.model_copy(update={"auth": AuthSettings(admin_key=SecretStr("k" * 32))})
    assert unsafe(long, "0.0.0.0", False) is None


def test_serve_when_one_of_several_without_shared_books_then_refused() -> None:
    cpu = load_settings(profile="cpu")
    several = cpu.model_copy(update={"metering": MeteringSettings(require_shared=True)})
    key = {"auth": AuthSettings(admin_key=SecretStr("k" * 32))}
    alone = several.model_copy(update=key)
    assert "shared database" in (unsafe(alone, "0.0.0.0", False) or "")
    with_db = alone.model_copy(update={"metering": MeteringSettings(
        require_shared=True, database_url="postgresql+asyncpg://db/gateway")})
    assert "shared Redis" in (unsafe(with_db, "0.0.0.0", False) or "")
    shared = alone.model_copy(update={"metering": MeteringSettings(
        require_shared=True, database_url="postgresql+asyncpg://db/gateway",
        redis_url="redis://redis:6379/0")})
    assert unsafe(shared, "0.0.0.0", False) is None
