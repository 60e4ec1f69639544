"""``llm-gateway adapters register/list/delete`` against a running gateway (a metered one on
a fake engine, on loopback): the CLI's registration is the admin API's, prices kept exact,
and a refusal is a non-zero exit that shows the gateway's error."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from cli import build
from engine.fake import FakeEngine
from tests.conftest import ADMIN_KEY, MODEL
from tests.gateway.adapters.test_adapter_registry import adapter_folder, lora_settings
from tests.gateway.metered import served

runner = CliRunner()


async def _cli(*args: str) -> tuple[int, str]:
    result = await asyncio.to_thread(runner.invoke, build(), [*args, "--admin-key", ADMIN_KEY])
    return result.exit_code, result.output


async def test_adapters_cli_when_registered_listed_deleted_then_gateway_follows(
    tmp_path: Path,
) -> None:
    settings = lora_settings(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}")
    async with served(FakeEngine(MODEL), settings) as server:
        url = server.base_url
        code, output = await _cli("adapters", "register", "think", "--base", MODEL,
                                  "--path", str(adapter_folder(tmp_path)),
                                  "--prompt-price", "0.15", "--completion-price", "0.000001",
                                  "--tenant", "acme", "--url", url)
        assert code == 0, output
        assert json.loads(output)["price"] == {"prompt": "0.15", "completion": "0.000001"}
        code, output = await _cli("adapters", "list", "--url", url)
        assert code == 0 and [json.loads(line)["id"] for line in output.splitlines()] == [
            "think"]
        code, output = await _cli("adapters", "register", "think", "--base", MODEL,
                                  "--path", str(adapter_folder(tmp_path)), "--url", url)
        assert code == 1 and "409" in output
        code, output = await _cli("adapters", "delete", "think", "--url", url)
        assert code == 0, output
        code, output = await _cli("adapters", "list", "--url", url)
        assert (code, output) == (0, "")
