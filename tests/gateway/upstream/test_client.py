"""Upstream settings: names, keys from the environment, validation at start-up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.settings import ModelSettings, Settings, UpstreamSettings
from gateway.upstream.client import UpstreamModel


def test_settings_when_upstream_reuses_a_model_name_then_refused() -> None:
    with pytest.raises(ValidationError, match="either a model or an upstream"):
        Settings(models={"m": ModelSettings()},
                 upstreams={"m": UpstreamSettings(base_url="http://x/v1")})


def test_settings_when_base_url_is_not_http_then_refused() -> None:
    with pytest.raises(ValidationError):
        UpstreamSettings(base_url="ftp://x/v1")


def test_model_when_key_variable_unset_then_start_up_fails_loudly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    settings = UpstreamSettings(base_url="https://api.example.com/v1", api_key_env="NO_SUCH_KEY")
    with pytest.raises(ValueError, match="NO_SUCH_KEY is not set"):
        UpstreamModel.from_settings("overflow", settings)


def test_model_when_key_set_then_names_encoding_and_key_resolved(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UP_KEY", "sk-up")
    settings = UpstreamSettings(base_url="https://api.example.com/v1/", model="gpt-4",
                                api_key_env="UP_KEY")
    model = UpstreamModel.from_settings("overflow", settings)
    assert (model.name, model.upstream_model, model.base_url) == (
        "overflow", "gpt-4", "https://api.example.com/v1")
    assert model.api_key == "sk-up" and model.counter.name == "cl100k_base"
    assert "sk-up" not in repr(model)
