"""``llm-gateway keys``: create (key printed once), list, revoke, on the settings' database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import build
from gateway.auth import api_keys


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LLMGW_METERING__DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/l.db")
    return tmp_path


def run(*args: str) -> str:
    result = CliRunner().invoke(build(), ["keys", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_keys_when_created_listed_revoked_then_cli_round_trips(cli_env: Path) -> None:
    created = json.loads(run("create", "--tenant", "acme", "--budget-usd", "12.50",
                             "--budget-period", "day", "--rpm", "60", "--tpm", "10000",
                             "--json", "--profile", "test"))
    assert api_keys.parse(created["key"]) is not None
    assert (created["tenant"], created["budget_usd"], created["budget_period"],
            created["rpm"], created["tpm"]) == ("acme", "12.5", "day", 60, 10000)
    plain = run("create", "--tenant", "other", "--profile", "test")
    assert "sk-gw-" in plain
    listed = json.loads(run("list", "--tenant", "acme", "--json", "--profile", "test"))
    assert [k["id"] for k in listed] == [created["id"]] and "key" not in listed[0]
    assert created["id"] in run("revoke", created["id"], "--profile", "test")
    assert json.loads(run("list", "--tenant", "acme", "--json", "--profile", "test")) == []
    everything = json.loads(run("list", "--all", "--json", "--profile", "test"))
    assert len(everything) == 2


def test_keys_when_revoking_unknown_key_then_exit_1(cli_env: Path) -> None:
    result = CliRunner().invoke(build(), ["keys", "revoke", "nope", "--profile", "test"])
    assert result.exit_code == 1
