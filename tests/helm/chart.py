"""Rendering the Helm chart for the tests: a pinned helm (scripts/tools.sh), parsed manifests."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "llm-gateway"
GOOD_VALUES = sorted((CHART / "ci").glob("*.yaml"))
TOOLS = REPO / ".tools"
Manifest = dict[str, Any]


def install_tools() -> Path:
    """helm (and the scan tools in .tools/venv); returns helm's path."""
    result = subprocess.run([str(REPO / "scripts" / "tools.sh")], capture_output=True,
                            text=True, check=True)
    return REPO / result.stdout.strip().splitlines()[-1]


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, cwd=REPO)


def render(helm: Path, values: Path | None = None, *sets: str) -> str:
    args = ["template", "rel", str(CHART), "--namespace", "llm"]
    args += ["-f", str(values)] if values else []
    for item in sets:
        args += ["--set", item]
    result = run_helm(helm, *args)
    if result.returncode != 0:
        raise AssertionError(result.stderr)
    return result.stdout


def manifests(text: str) -> list[Manifest]:
    import yaml

    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[Manifest], kind: str, name_part: str = "") -> Manifest:
    hits = [d for d in docs if d["kind"] == kind and name_part in d["metadata"]["name"]]
    assert len(hits) == 1, f"expected one {kind} matching {name_part!r}, got {len(hits)}"
    return hits[0]


def container(workload: Manifest, name: str) -> Manifest:
    spec: list[Manifest] = workload["spec"]["template"]["spec"]["containers"]
    return next(c for c in spec if c["name"] == name)


def pod_specs(docs: list[Manifest]) -> list[Manifest]:
    return [d["spec"]["template"]["spec"] for d in docs
            if d["kind"] in ("Deployment", "StatefulSet")]
