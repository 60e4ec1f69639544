"""The speculation section serves each draft folder with the method of its kind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.suites.speculation import _draft_method
from draft_models.registry import SHIPPED_DIR


@pytest.mark.parametrize(("shipped", "method"), [
    ("smollm2-135m-instruct", "draft_model"),
    ("smollm2-135m-instruct-eagle", "eagle"),
    ("smollm2-135m-instruct-eagle3", "eagle3"),
])
def test_draft_method_when_draft_install_wrote_the_folder_then_its_kind(
    tmp_path: Path, shipped: str, method: str
) -> None:
    shutil.copy(SHIPPED_DIR / shipped / "draft-card.json", tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    assert _draft_method(tmp_path) == method


def test_draft_method_when_a_published_folder_then_read_from_its_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"speculators_model_type": "eagle3"}))
    assert _draft_method(tmp_path) == "eagle3"
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    assert _draft_method(tmp_path) == "draft_model"
