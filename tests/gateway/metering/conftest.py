"""Each metering test gets a data directory of its own: a settlement journal written during
a database outage must not outlive the test, nor reach another test (or another run) that
uses the same ``metering.instance_id``."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "data"
    monkeypatch.setenv("LLMGW_DATA_DIR", str(folder))
    return folder
