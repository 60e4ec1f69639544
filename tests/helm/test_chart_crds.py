"""The chart's custom resources validate against their CRDs' own schemas (tests/helm/crds/).

The API server validates a custom resource against the ``openAPIV3Schema`` of its CRD version
and, with strict field validation (kubectl's default), refuses unknown fields. Here the same
schemas run through ``jsonschema`` with unknown fields refused wherever the CRD does not
preserve them. CEL rules and admission webhooks are not run (tests/helm/crds/README.md).
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.helm.chart import GOOD_VALUES, Manifest, install_tools, manifests, render

CRDS = Path(__file__).parent / "crds"


@pytest.fixture(scope="module")
def helm() -> Path:
    return install_tools()


def strict(node: Any) -> Any:
    """A CRD schema that refuses unknown fields, as the API server's strict validation."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@cache
def schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the strict JSON schema of every served CRD version here."""
    found = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            spec = crd["spec"]
            for version in spec["versions"]:
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                found[key] = strict(schema)
    return found


def custom_resources(text: str) -> list[Manifest]:
    return [d for d in manifests(text) if "." in d["apiVersion"].split("/")[0]
            and not d["apiVersion"].startswith(("apps/", "policy/", "autoscaling/"))
            and d["apiVersion"].split("/")[0].endswith((".sh", ".com", ".io"))
            and not d["apiVersion"].startswith("networking.k8s.io/")]


def errors(document: Manifest) -> list[str]:
    schema = schemas()[(document["apiVersion"], document["kind"])]
    validator = jsonschema.Draft7Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(document)]


@pytest.mark.parametrize("values", GOOD_VALUES, ids=lambda p: p.stem)
def test_every_custom_resource_passes_its_crd_schema(helm: Path, values: Path) -> None:
    for document in custom_resources(render(helm, values)):
        assert not errors(document), (document["kind"], errors(document))


def test_the_ci_values_cover_every_custom_resource_kind(helm: Path) -> None:
    kinds = {d["kind"] for values in GOOD_VALUES for d in custom_resources(render(helm, values))}
    assert kinds == {"ScaledObject", "ServiceMonitor", "HTTPRoute"}


def test_a_misspelt_field_fails_the_crd_schema(helm: Path) -> None:
    scaled = next(d for d in custom_resources(render(helm, GOOD_VALUES[0]))
                  if d["kind"] == "ScaledObject")
    scaled["spec"]["minReplicas"] = scaled["spec"].pop("minReplicaCount")
    assert errors(scaled)
