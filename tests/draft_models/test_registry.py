import json
import shutil
from pathlib import Path

import pytest

from draft_models.registry import (
    DraftIncompatibleError,
    check_compatible,
    fingerprint,
    read_card,
    write_card,
)
from tests.draft_models.conftest import make_target


def test_check_compatible_accepts_a_draft_with_the_targets_tokenizer(
    tiny_target: Path, tmp_path: Path
) -> None:
    draft = tmp_path / "draft"
    shutil.copytree(tiny_target, draft)
    check_compatible(tiny_target, draft)


def test_check_compatible_names_a_different_vocabulary_size(
    tiny_target: Path, tmp_path: Path
) -> None:
    other = make_target(tmp_path / "other", vocab_size=96)
    with pytest.raises(DraftIncompatibleError, match="vocab_size: target 128 vs draft 96"):
        check_compatible(tiny_target, other)


def test_check_compatible_names_a_different_tokenizer(tiny_target: Path, tmp_path: Path) -> None:
    draft = tmp_path / "draft"
    shutil.copytree(tiny_target, draft)
    data = json.loads((draft / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    vocab["w5"], vocab["w6"] = vocab["w6"], vocab["w5"]  # same size, different ids
    (draft / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(DraftIncompatibleError, match=r"tokenizer\.json: target sha256"):
        check_compatible(tiny_target, draft)


def test_check_compatible_names_different_special_tokens(tiny_target: Path, tmp_path: Path) -> None:
    draft = tmp_path / "draft"
    shutil.copytree(tiny_target, draft)
    config = json.loads((draft / "config.json").read_text())
    config["eos_token_id"] = 7
    (draft / "config.json").write_text(json.dumps(config))
    with pytest.raises(DraftIncompatibleError, match="eos_token_id: target 2 vs draft 7"):
        check_compatible(tiny_target, draft)


def test_fingerprint_ignores_tokenizer_file_formatting(tiny_target: Path, tmp_path: Path) -> None:
    draft = tmp_path / "draft"
    shutil.copytree(tiny_target, draft)
    data = json.loads((draft / "tokenizer.json").read_text())
    (draft / "tokenizer.json").write_text(json.dumps(data, indent=4))
    assert fingerprint(draft) == fingerprint(tiny_target)


def test_card_round_trips_with_its_format_tag(tmp_path: Path) -> None:
    write_card(tmp_path, {"target": {"name": "t"}})
    assert read_card(tmp_path)["target"] == {"name": "t"}
    assert read_card(tmp_path)["format"] == "llm-gateway-draft/1"
