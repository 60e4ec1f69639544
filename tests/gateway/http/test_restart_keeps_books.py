"""A gateway process stopped and started again on the same data directory (what the chart's
Recreate rollout does with its data volume) keeps every key, ledger row, budget's spend and
file: the SQLite ledger (no database URL) holds them all under ``data_dir``."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import ADMIN_KEY, MODEL
from tests.gateway.fake_gateway_process import start_fake_gateway

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
CONTENT = b'{"custom_id": "r1", "method": "POST", "url": "/v1/completions", "body": {}}\n'


def _start(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    # No database URL: the ledger is <data_dir>/ledger.db, as on the chart's data volume.
    return start_fake_gateway("", data_dir.parent / "gateway.log", 0.0,
                              {"LLMGW_DATA_DIR": str(data_dir)})


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM: uvicorn shuts down (the lifespan closes the ledger), then re-raises it."""
    process.terminate()
    assert process.wait(timeout=60) in (0, -signal.SIGTERM)


def _books(base: str, token: str, file_id: str) -> dict[str, Any]:
    """What the gateway at ``base`` holds: the key (and its period's spend), the ledger,
    the file."""
    user = {"authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, timeout=30) as client:
        keys = client.get("/admin/keys", headers=ADMIN).json()["data"]
        return {
            "models": client.get("/v1/models", headers=user).status_code,
            "keys": [(k["id"], k["tenant"], k["budget_usd"], k["period_spend_usd"])
                     for k in keys],
            "ledger": [(r["id"], r["status"], r["completion_tokens"], r["cost_usd"]) for r in
                       client.get("/admin/ledger", headers=ADMIN).json()["data"]],
            "spend": client.get("/v1/spend", headers=user).json()["totals"],
            "file": client.get(f"/v1/files/{file_id}", headers=user).json(),
            "content": client.get(f"/v1/files/{file_id}/content", headers=user).content,
        }


def test_gateway_when_restarted_on_the_same_data_dir_then_keys_ledger_and_files_remain(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    process, base = _start(data_dir)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            made = client.post("/admin/keys", headers=ADMIN,
                               json={"tenant": "acme", "budget_usd": "5"})
            assert made.status_code == 201, made.text
            token = made.json()["key"]
            user = {"authorization": f"Bearer {token}"}
            answer = client.post("/v1/completions", headers=user,
                                 json={"model": MODEL, "prompt": "Hi", "max_tokens": 4})
            assert answer.status_code == 200, answer.text
            upload = client.post("/v1/files", headers=user, data={"purpose": "batch"},
                                 files={"file": ("in.jsonl", CONTENT)})
            assert upload.status_code == 200, upload.text
        before = _books(base, token, upload.json()["id"])
    finally:
        _stop(process)
    assert (data_dir / "ledger.db").is_file()
    restarted, base = _start(data_dir)
    try:
        after = _books(base, token, upload.json()["id"])
    finally:
        _stop(restarted)
    assert after == before
    assert after["models"] == 200 and after["content"] == CONTENT
    [(_, status, completion_tokens, _)] = after["ledger"]
    assert status != "reserved" and completion_tokens > 0
    assert after["spend"]["requests"] == 1 and after["keys"][0][1:3] == ("acme", "5")
    assert after["keys"][0][3] != "0"  # the budget's spend this period survived too
