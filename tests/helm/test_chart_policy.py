"""A static policy scan of every render (checkov, in .tools/venv from scripts/tools.sh).

The restricted Pod Security profile, resource and probe checks must pass for every pod the
chart makes, in every CI values file. Any other failure must be one of ``ACCEPTED`` below,
each with its reason; a new kind of finding fails the test until it is fixed or argued here.
"""

from __future__ import annotations

import json
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from tests.helm.chart import GOOD_VALUES, TOOLS, install_tools, render

REQUIRED = {
    # restricted profile
    "CKV_K8S_16": "privileged", "CKV_K8S_17": "hostPID", "CKV_K8S_18": "hostIPC",
    "CKV_K8S_19": "hostNetwork", "CKV_K8S_20": "allowPrivilegeEscalation",
    "CKV_K8S_22": "readOnlyRootFilesystem", "CKV_K8S_23": "root containers",
    "CKV_K8S_25": "added capabilities", "CKV_K8S_28": "NET_RAW", "CKV_K8S_37": "capabilities",
    "CKV_K8S_39": "SYS_ADMIN", "CKV_K8S_29": "pod securityContext",
    "CKV_K8S_30": "container securityContext", "CKV_K8S_31": "seccomp RuntimeDefault",
    "CKV_K8S_40": "high UID", "CKV_K8S_38": "service account token",
    # resources
    "CKV_K8S_10": "CPU requests", "CKV_K8S_11": "CPU limits",
    "CKV_K8S_12": "memory requests", "CKV_K8S_13": "memory limits",
    # probes
    "CKV_K8S_8": "liveness probe", "CKV_K8S_9": "readiness probe",
    # every pod under a NetworkPolicy
    "CKV2_K8S_6": "NetworkPolicy",
    # images and namespaces
    "CKV_K8S_14": "image tag fixed", "CKV_K8S_21": "default namespace",
}
ACCEPTED = {
    "CKV_K8S_43": "image digests are a value (images.*.digest); tags stay the default",
    "CKV_K8S_15": "pullPolicy IfNotPresent is right for pinned tags and digests",
    "CKV_K8S_35": "the gateway reads its admin key and URLs from env (pydantic-settings)",
}


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, set[str]]]:
    """values file -> {"passed"|"failed": check ids}, from one checkov run over all renders."""
    helm = install_tools()
    folder = tmp_path_factory.mktemp("renders")
    for values in GOOD_VALUES:
        (folder / f"{values.stem}.yaml").write_text(render(helm, values))
    checkov = TOOLS / "venv" / "bin" / "checkov"
    result = subprocess.run(
        [str(checkov), "-d", str(folder), "--framework", "kubernetes", "--skip-download",
         "--compact", "-o", "json"], capture_output=True, text=True, timeout=600)
    report = json.loads(result.stdout)
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for section in report if isinstance(report, list) else [report]:
        for outcome in ("passed", "failed"):
            for check in section["results"].get(f"{outcome}_checks", []):
                found[Path(check["file_path"]).stem][outcome].add(check["check_id"])
    return found


@pytest.mark.parametrize("values", GOOD_VALUES, ids=lambda p: p.stem)
def test_restricted_profile_resource_and_probe_checks_pass(
    scan: dict[str, dict[str, set[str]]], values: Path
) -> None:
    result = scan[values.stem]
    assert not result["failed"] & set(REQUIRED), {
        check: REQUIRED[check] for check in result["failed"] & set(REQUIRED)}
    assert set(REQUIRED) <= result["passed"], set(REQUIRED) - result["passed"]


@pytest.mark.parametrize("values", GOOD_VALUES, ids=lambda p: p.stem)
def test_no_other_finding_than_the_accepted_ones(
    scan: dict[str, dict[str, set[str]]], values: Path
) -> None:
    assert scan[values.stem]["failed"] <= set(ACCEPTED), (
        scan[values.stem]["failed"] - set(ACCEPTED))
