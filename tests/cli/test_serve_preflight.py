"""The gateway refuses to start, with a reason, what the slim image (no vLLM) cannot serve."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from cli.serve import missing_vllm
from gateway.settings import ModelSettings
from tests.conftest import make_settings


def settings_with(**model: Any) -> Any:
    return make_settings(models={"m": ModelSettings(**model)}, default_model="m")


@pytest.fixture
def no_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "vllm" else real(name, *a))


@pytest.mark.usefixtures("no_vllm")
def test_without_vllm_remote_models_are_served() -> None:
    assert missing_vllm(settings_with(replicas_dns="engine:8001")) is None


@pytest.mark.usefixtures("no_vllm")
def test_without_vllm_a_tool_parser_is_refused_by_name() -> None:
    problem = missing_vllm(settings_with(replicas_dns="engine:8001", tool_parser="hermes"))
    assert problem is not None and "tool_parser" in problem and "hermes" in problem


@pytest.mark.usefixtures("no_vllm")
def test_without_vllm_an_embedded_engine_is_refused() -> None:
    problem = missing_vllm(settings_with())
    assert problem is not None and "embedded" in problem


def test_with_vllm_nothing_is_missing() -> None:
    assert missing_vllm(settings_with(tool_parser="hermes")) is None
