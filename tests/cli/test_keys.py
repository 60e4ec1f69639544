"""``llm-gateway keys`` and ``tenants``: create (a key printed once), update, rotate, list
with spend, revoke, on the settings' database."""

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


def test_keys_when_updated_then_only_given_options_change_and_clear_unsets(
    cli_env: Path,
) -> None:
    created = json.loads(run("create", "--tenant", "acme", "--model", "m1", "--model", "m2",
                             "--max-parallel", "4", "--expires-at", "2999-01-01T00:00:00Z",
                             "--metadata", '{"team": "search"}', "--rpm", "10", "--json",
                             "--profile", "test"))
    assert (created["models"], created["max_parallel_requests"], created["expires_at"],
            created["metadata"]) == (["m1", "m2"], 4, "2999-01-01T00:00:00Z",
                                     {"team": "search"})
    updated = json.loads(run("update", created["id"], "--tpm", "500", "--clear", "models",
                             "--clear", "expires_at", "--json", "--profile", "test"))
    assert (updated["models"], updated["expires_at"], updated["tpm"], updated["rpm"],
            updated["metadata"]) == (None, None, 500, 10, {"team": "search"})


def test_keys_when_rotated_then_new_token_printed_once_and_id_kept(cli_env: Path) -> None:
    created = json.loads(run("create", "--tenant", "acme", "--json", "--profile", "test"))
    rotated = json.loads(run("rotate", created["id"], "--grace-s", "60", "--json",
                             "--profile", "test"))
    assert rotated["id"] == created["id"] and rotated["key"] != created["key"]
    assert api_keys.parse(rotated["key"]) is not None
    assert rotated["previous_key_valid_until"] is not None
    listed = json.loads(run("list", "--json", "--profile", "test"))
    assert "key" not in listed[0] and listed[0]["period_spend_usd"] == "0"
    assert rotated["key"] not in run("list", "--profile", "test")


def test_keys_when_terms_are_refused_then_usage_error_and_nothing_created(
    cli_env: Path,
) -> None:
    for args in (["--tenant", "admin"], ["--tenant", "t", "--expires-at", "2000-01-01T00:00Z"],
                 ["--tenant", "t", "--metadata", "[1]"], ["--tenant", "t", "--budget-usd", "x"],
                 ["--tenant", "t", "--budget-period", "week"]):
        result = CliRunner().invoke(build(), ["keys", "create", *args, "--profile", "test"])
        assert result.exit_code == 2, (args, result.output)
    assert json.loads(run("list", "--all", "--json", "--profile", "test")) == []
    missing = CliRunner().invoke(build(), ["keys", "update", "nope", "--rpm", "1",
                                           "--profile", "test"])
    assert missing.exit_code == 1


def test_tenants_when_created_updated_listed_then_cli_round_trips(cli_env: Path) -> None:
    def tenants(*args: str) -> str:
        result = CliRunner().invoke(build(), ["tenants", *args, "--profile", "test"])
        assert result.exit_code == 0, result.output
        return result.output

    created = json.loads(tenants("create", "acme", "--budget-usd", "100", "--rpm", "600",
                                 "--model", "m1", "--json"))
    assert (created["name"], created["budget_usd"], created["rpm"], created["models"]) == (
        "acme", "100", 600, ["m1"])
    updated = json.loads(tenants("update", "acme", "--max-parallel", "8", "--clear", "rpm",
                                 "--json"))
    assert (updated["rpm"], updated["max_parallel_requests"]) == (None, 8)
    listed = json.loads(tenants("list", "--json"))
    assert [(t["name"], t["period_spend_usd"]) for t in listed] == [("acme", "0")]
    for args in (["create", "acme"], ["create", "anonymous"]):
        result = CliRunner().invoke(build(), ["tenants", *args, "--profile", "test"])
        assert result.exit_code == 2, result.output
    assert CliRunner().invoke(build(), ["tenants", "update", "nobody", "--rpm", "1",
                                        "--profile", "test"]).exit_code == 1


def test_fair_share_when_set_by_cli_then_tenant_and_key_carry_it_and_clear_resets(
        cli_env: Path) -> None:
    def cli(*args: str) -> dict[str, object]:
        result = CliRunner().invoke(build(), [*args, "--profile", "test", "--json"])
        assert result.exit_code == 0, result.output
        reply: dict[str, object] = json.loads(result.output.splitlines()[-1])
        return reply

    tenant = cli("tenants", "create", "acme", "--weight", "3", "--priority", "2")
    assert (tenant["weight"], tenant["priority"]) == (3.0, 2)
    assert cli("tenants", "update", "acme", "--clear", "weight")["weight"] is None
    key = cli("keys", "create", "--tenant", "acme", "--priority", "5")
    assert (key["weight"], key["priority"]) == (None, 5)
    assert cli("keys", "update", str(key["id"]), "--weight", "0.5")["weight"] == 0.5
    refused = CliRunner().invoke(build(), ["tenants", "update", "acme", "--priority", "10",
                                           "--profile", "test"])
    assert refused.exit_code == 2
