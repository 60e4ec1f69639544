"""Every profile that drafts on a CPU names a head or draft that `draft install` writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from draft_models.materialize import draft_dir_name
from draft_models.registry import read_card
from gateway.settings import default_config_dir, load_settings

SHIPPED = Path(__file__).resolve().parents[2] / "draft_models" / "shipped"
CPU_PROFILES = ("cpu-speculation", "test-speculation", "test-eagle", "test-eagle3")


@pytest.mark.parametrize("profile", CPU_PROFILES)
def test_profile_when_it_drafts_then_its_draft_is_shipped_with_that_method(profile: str) -> None:
    assert (default_config_dir() / "profiles" / f"{profile}.yaml").is_file()
    settings = load_settings(profile=profile)
    installed = {draft_dir_name(read_card(f)): read_card(f)["architecture"]
                 for f in SHIPPED.iterdir() if f.is_dir()}
    for name, model in settings.models.items():
        spec = model.speculation
        if spec.method in ("none", "ngram"):
            continue
        assert spec.draft_path is not None and not spec.draft_path.is_absolute(), name
        assert str(spec.draft_path) in installed, f"{profile}: {spec.draft_path} is not shipped"
        method = installed[str(spec.draft_path)].get("method", "draft_model")
        assert method == spec.method, f"{profile}: {spec.draft_path} is a {method} draft"
