from __future__ import annotations

from pathlib import Path

import pytest

from bench.plan import FULL
from bench.runner import RunOptions
from bench.session import BenchRequest
from bench.targets import LaunchOptions
from gateway.settings import load_settings
from tests.conftest import MODEL


def _request(tmp_path: Path, **overrides: object) -> BenchRequest:
    settings = load_settings(profile="cpu")
    options = RunOptions(LaunchOptions(settings, "cpu", 1, 0.0, 60, tmp_path))
    fields: dict[str, object] = {
        "settings": settings, "model": MODEL, "quick": False, "sections": ("overhead",),
        "options": options, "out_dir": tmp_path, **overrides}
    return BenchRequest(**fields)  # type: ignore[arg-type]


def test_sizes_when_levels_and_max_tokens_given_then_every_section_uses_them(
    tmp_path: Path,
) -> None:
    sizes = _request(tmp_path, levels=(1, 16), max_tokens=64).sizes
    assert sizes.max_tokens == 64
    assert sizes.overhead_levels == sizes.batching_levels == (1, 16)
    assert sizes.variant_levels == sizes.peer_levels == (1, 16)
    assert sizes.min_requests == FULL.min_requests


def test_request_when_section_unknown_then_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown sections"):
        _request(tmp_path, sections=("overhead", "vibes"))


def test_request_when_model_not_configured_then_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not in configs"):
        _request(tmp_path, model="no-such-model")


def test_request_kind_names_the_result_files_and_must_be_a_plain_word(tmp_path: Path) -> None:
    assert _request(tmp_path, kind="peer-llamacpp").kind == "peer-llamacpp"
    with pytest.raises(ValueError, match="kind"):
        _request(tmp_path, kind="../peer")


def test_full_runs_compare_a_peer_at_one_stream_and_eight() -> None:
    assert FULL.peer_levels == (1, 8)
