"""What ``serve`` prints on a terminal once the gateway answers: where it is, what it serves,
whether it asks for keys, and where to look next."""

from __future__ import annotations

import sys
from enum import StrEnum

from rich.console import Console
from rich.panel import Panel

from gateway.settings import Settings


class LogFormat(StrEnum):
    AUTO = "auto"
    JSON = "json"
    TEXT = "text"


def human_logs(log_format: LogFormat, settings: Settings) -> bool:
    """Short lines and a banner on a terminal (``auto``), JSON lines elsewhere (the chart);
    ``observability.json_logs: false`` asks for short lines everywhere."""
    if log_format is LogFormat.AUTO:
        return sys.stderr.isatty() or not settings.observability.json_logs
    return log_format is LogFormat.TEXT


def banner_lines(settings: Settings, host: str, port: int) -> list[str]:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    base = f"http://{shown}:{port}"
    auth = ("on (Authorization: Bearer <key>; `llm-gateway keys create` makes one)"
            if settings.auth.enabled else "[red]off[/red] (loopback only)")
    lines = [f"[bold]llm-gateway[/bold] serving on {base}/v1  (profile {settings.profile})",
             f"models: {', '.join(settings.served_models()) or 'none'}",
             f"auth: {auth}",
             f"dashboard: {base}/dashboard", f"admin page: {base}/dashboard/admin"]
    if settings.api_docs:
        lines.append(f"API docs: {base}/docs")
    lines.append("stop: Ctrl+C (drains requests in flight first)")
    return lines


def print_banner(settings: Settings, host: str, port: int, console: Console | None = None) -> None:
    (console or Console(stderr=True)).print(
        Panel("\n".join(banner_lines(settings, host, port)), expand=False))
