"""``serve``'s console: a banner and short log lines on a terminal, JSON lines elsewhere."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from cli.banner import LogFormat, banner_lines, human_logs, print_banner
from gateway.settings import load_settings


def test_banner_when_serving_on_all_addresses_then_names_a_reachable_url_models_and_auth(
) -> None:
    settings = load_settings(profile="test")
    text = "\n".join(banner_lines(settings, "0.0.0.0", 8000))
    assert "http://127.0.0.1:8000/v1" in text and "(profile test)" in text
    assert "smollm2-135m-instruct" in text and "auth: on" in text
    assert "http://127.0.0.1:8000/dashboard/admin" in text and "/docs" in text  # api_docs on


def test_banner_when_printed_then_a_panel_with_the_lines() -> None:
    out = io.StringIO()
    print_banner(load_settings(profile="test"), "127.0.0.1", 9000,
                 Console(file=out, width=200, color_system=None))
    assert "llm-gateway serving on http://127.0.0.1:9000/v1" in out.getvalue()
    assert out.getvalue().lstrip().startswith("╭")


@pytest.mark.parametrize(("chosen", "tty", "human"), [
    (LogFormat.AUTO, True, True), (LogFormat.AUTO, False, False),
    (LogFormat.JSON, True, False), (LogFormat.TEXT, False, True)])
def test_log_format_when_chosen_then_text_on_a_terminal_and_json_elsewhere(
    chosen: LogFormat, tty: bool, human: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.stderr", _Tty(tty))
    assert human_logs(chosen, load_settings(profile="test")) is human


class _Tty(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty
