"""The chart's engines: what rolls them, where their weights live, how they are named."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.config import EngineOptions
from gateway.settings import ModelSettings
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

TWO_MODELS = CHART / "ci" / "two-models-values.yaml"
QWEN_REVISION = "a09a35458c702b33eeacc393d103063234e8bc28"
# The docs' "your own model" example (docs/deploy-kubernetes.md), as a values file.
OWN_MODEL = {"defaultModel": "qwen2-5-7b-instruct", "models": {"qwen2-5-7b-instruct": {
    "settings": {"dtype": "bfloat16", "enforce_eager": False, "max_model_len": 16384},
    "download": {"repo": "Qwen/Qwen2.5-7B-Instruct", "revision": QWEN_REVISION},
    "engine": {"gpus": 1}}}}


@pytest.fixture(scope="module")
def helm() -> Path:
    return install_tools()


def checksums(text: str) -> dict[str, str]:
    return {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"][
        "checksum/config"] for d in manifests(text) if d["kind"] in ("Deployment", "StatefulSet")
        and "checksum/config" in d["spec"]["template"]["metadata"].get("annotations", {})}


def test_gateway_only_changes_roll_the_gateway_and_no_engine(helm: Path) -> None:
    before = checksums(render(helm, TWO_MODELS))
    after = checksums(render(
        helm, TWO_MODELS, "config.prices.models.qwen2-5-7b-instruct.prompt=0.5",
        "config.gateway.limits.max_n=4",
        "models.qwen2-5-7b-instruct.settings.routing.max_attempts=2",
        "models.qwen2-5-7b-instruct.settings.tool_parser=hermes"))
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"rel-llm-gateway-gateway"}


def test_an_engine_setting_rolls_that_engine_only(helm: Path) -> None:
    before = checksums(render(helm, TWO_MODELS))
    after = checksums(render(helm, TWO_MODELS,
                             "models.qwen2-5-7b-instruct.settings.max_num_seqs=64"))
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"rel-llm-gateway-gateway", "rel-llm-gateway-engine-qwen2-5-7b-instruct"}


def test_gateway_only_keys_are_the_settings_beyond_the_engines_options() -> None:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    listed = re.search(r'define "llm-gateway.gatewaySettingKeys" -}}\n(.*)\n', helpers)
    assert listed is not None
    engine_reads = {f.name for f in dataclasses.fields(EngineOptions)} | {
        "source", "path", "max_loras", "max_lora_rank"}  # LoRA: engine flags beyond EngineOptions
    gateway_only = {f.name for f in dataclasses.fields(ModelSettings)} - engine_reads
    assert set(listed.group(1).split()) == gateway_only


def test_long_model_names_never_truncate_to_the_same_objects(helm: Path, tmp_path: Path) -> None:
    stem = "a-very-long-model-name-that-shares-its-start"  # 44 characters: over 40
    names = [stem[:36] + "-one", stem[:36] + "-two"]
    values = tmp_path / "long.yaml"
    values.write_text(yaml.safe_dump({"defaultModel": names[0], "models": {
        name: {"settings": {"dtype": "bfloat16"}} for name in names}}))
    docs = manifests(render(helm, values, "fullnameOverride=" + "x" * 40))
    keys = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), "duplicate objects"
    services = [d for d in docs if d["kind"] == "Service"
                and d["metadata"]["labels"]["app.kubernetes.io/component"] == "engine"]
    assert len(services) == 2
    assert all(len(d["metadata"]["name"]) <= 52 for d in docs if d["kind"] == "Deployment")
    gateway = find(docs, "Deployment", "-gateway")["spec"]["template"]["spec"]
    init_names = [c["name"] for c in gateway["initContainers"]]
    assert len(set(init_names)) == 2 and all(len(n) <= 63 for n in init_names)


def test_own_model_from_the_docs_deploys_no_example_engine(helm: Path, tmp_path: Path) -> None:
    values = tmp_path / "own.yaml"
    values.write_text(yaml.safe_dump(OWN_MODEL))
    docs = manifests(render(helm, values))
    engines = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")
               and d["metadata"]["labels"].get("app.kubernetes.io/component") == "engine"]
    assert [e["metadata"]["labels"]["llm-gateway.io/model"] for e in engines] == [
        "qwen2-5-7b-instruct"]
    assert "smollm2" not in render(helm, values)


def test_gpu_engines_roll_without_a_surge_pod(helm: Path) -> None:
    docs = manifests(render(helm, TWO_MODELS))
    qwen = find(docs, "Deployment", "engine-qwen")
    assert qwen["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}


def test_replicas_share_one_read_only_model_volume(helm: Path) -> None:
    docs = manifests(render(helm, TWO_MODELS))
    qwen = find(docs, "Deployment", "engine-qwen")
    assert qwen["spec"]["replicas"] == 3
    assert "volumeClaimTemplates" not in qwen["spec"]
    pod = qwen["spec"]["template"]["spec"]
    claim = next(v for v in pod["volumes"] if v["name"] == "models")
    assert claim["persistentVolumeClaim"]["claimName"] == (
        "rel-llm-gateway-engine-qwen2-5-7b-instruct-models")
    assert find(docs, "PersistentVolumeClaim", "engine-qwen")["spec"]["accessModes"] == [
        "ReadWriteMany"]
    mount = next(m for m in container(qwen, "engine")["volumeMounts"] if m["name"] == "models")
    assert mount["readOnly"] is True
    fetch = pod["initContainers"][0]
    assert "Qwen/Qwen2.5-7B-Instruct" in fetch["command"] and QWEN_REVISION in fetch["command"]
    assert "flock" in fetch["command"][2]  # one replica downloads, the others wait and skip
    cache = next(v for v in pod["volumes"] if v["name"] == "compile-cache")
    assert "emptyDir" in cache
    env = {e["name"]: e.get("value") for e in container(qwen, "engine")["env"]}
    assert env["VLLM_CACHE_ROOT"] == "/cache/vllm"


def test_gateway_fetches_tokenizer_files_only(helm: Path) -> None:
    docs = manifests(render(helm, TWO_MODELS))
    gateway = find(docs, "Deployment", "-gateway-gateway")["spec"]["template"]["spec"]
    fetch = next(c for c in gateway["initContainers"] if "Qwen/Qwen2.5-7B-Instruct" in c["command"])
    assert fetch["command"][3] == "true"  # tokenizer files only


def test_a_floating_revision_is_refused_unless_allowed(helm: Path) -> None:
    revision = "models.qwen2-5-7b-instruct.download.revision=main"
    refused = run_helm(helm, "template", "rel", str(CHART), "-f", str(TWO_MODELS),
                       "--set", revision)
    assert refused.returncode != 0 and "40-character commit" in refused.stderr
    render(helm, TWO_MODELS, revision,
           "models.qwen2-5-7b-instruct.download.allowUnpinnedRevision=true")


def test_cpu_only_values_request_no_gpu_and_keep_a_claim_per_replica(helm: Path) -> None:
    text = render(helm, CHART / "ci" / "cpu-only-values.yaml")
    assert "nvidia.com/gpu" not in text
    engine = find(manifests(text), "StatefulSet", "engine-")
    assert engine["spec"]["template"]["spec"].get("nodeSelector") is None
    assert engine["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "models"


def test_extra_engine_args_follow_the_rendered_flags(helm: Path) -> None:
    docs = manifests(render(helm, CHART / "ci" / "gpu-production-values.yaml"))
    args = container(find(docs, "Deployment", "engine-llama"), "engine")["args"]
    assert args[-2:] == ["--max-num-batched-tokens", "8192"]
    pod = find(docs, "Deployment", "engine-llama")["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia" and pod["priorityClassName"] == "llm-serving"


def test_keda_scales_the_engine_workload_on_queue_depth(helm: Path) -> None:
    docs = manifests(render(helm, CHART / "ci" / "autoscaling-values.yaml"))
    scaled = find(docs, "ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    workload = find(docs, target["kind"], target["name"])
    assert "replicas" not in workload["spec"]  # KEDA owns the replica count
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    assert 'vllm:num_requests_waiting{model_name="smollm2-135m-instruct"' in query
    # Prometheus scrapes the engines (no credentials) for the queue depth KEDA reads.
    engines = find(docs, "ServiceMonitor", "-engine")
    assert engines["spec"]["endpoints"][0]["path"] == "/metrics"
    assert "authorization" not in engines["spec"]["endpoints"][0]


def test_engine_compile_cache_is_an_empty_dir_unless_a_claim_is_given(helm: Path) -> None:
    cpu_only = CHART / "ci" / "cpu-only-values.yaml"
    for sets, expected in (((), {"emptyDir": {"sizeLimit": "2Gi"}}),
                           (("engineDefaults.compileCache.existingClaim=llm-compile-cache",),
                            {"persistentVolumeClaim": {"claimName": "llm-compile-cache"}})):
        engine = find(manifests(render(helm, cpu_only, *sets)), "StatefulSet", "engine")
        cache = next(v for v in engine["spec"]["template"]["spec"]["volumes"]
                     if v["name"] == "compile-cache")
        assert {k: v for k, v in cache.items() if k != "name"} == expected
        mounts = {m["name"]: m["mountPath"] for m in container(engine, "engine")["volumeMounts"]}
        assert mounts["compile-cache"] == "/cache"
        env = {e["name"]: e.get("value") for e in container(engine, "engine")["env"]}
        # the gateway's own layout (engine.config.EngineConfig.environment) under /cache
        assert (env["VLLM_CACHE_ROOT"], env["TORCHINDUCTOR_CACHE_DIR"]) == (
            "/cache/vllm", "/cache/inductor")
        assert env["VLLM_USE_AOT_COMPILE"] == "0"  # a CPU engine: as EngineConfig.environment


def engine_pods(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")
            and d["metadata"]["labels"].get("app.kubernetes.io/component") == "engine"]


def gate_params(gate: dict[str, Any]) -> dict[str, Any]:
    """The sidecar's arguments as `llm-gateway engine gate` parses them (cli/engine.py)."""
    from typer.main import get_command

    from cli.engine import app

    assert gate["command"] == ["llm-gateway", "engine", "gate"]
    command = get_command(app).commands["gate"]  # type: ignore[attr-defined]
    return dict(command.make_context("gate", list(gate["args"])).params)


@pytest.mark.parametrize("values", GOOD_VALUES, ids=lambda p: p.stem)
def test_engine_pods_open_only_the_gate_and_vllm_listens_on_loopback(
    helm: Path, values: Path,
) -> None:
    docs = manifests(render(helm, values))
    slim = container(find(docs, "Deployment", "-gateway-gateway"), "gateway")["image"]
    secret_key = None
    for workload in engine_pods(docs):
        engine, gate = container(workload, "engine"), container(workload, "gate")
        args = engine["args"]
        assert args[args.index("--host") + 1] == "127.0.0.1"
        engine_port = int(args[args.index("--port") + 1])
        assert "ports" not in engine
        port = gate["ports"][0]
        assert port["name"] == "http" and port["containerPort"] != engine_port
        params = gate_params(gate)
        assert (params["host"], params["port"], params["engine_port"]) == (
            "0.0.0.0", port["containerPort"], engine_port)
        assert params["drain_s"] == int(args[args.index("--shutdown-timeout") + 1])
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):  # through the gate
            assert engine[probe]["httpGet"] == {"path": "/health", "port": port["containerPort"]}
        keys = [{e["name"]: e for e in c["env"]}["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]
                for c in (engine, gate)]
        assert keys[0] == keys[1] and keys[0] == (secret_key or keys[0])
        secret_key = keys[0]
        assert gate["image"] == slim  # the gateway's image: no vLLM
        assert gate["securityContext"]["readOnlyRootFilesystem"] is True
    services = [d for d in docs if d["kind"] == "Service"
                and d["metadata"]["labels"]["app.kubernetes.io/component"] == "engine"]
    assert services and all(p["targetPort"] == "http" for s in services
                            for p in s["spec"]["ports"])
    for policy in (d for d in docs if d["kind"] == "NetworkPolicy"
                   and d["metadata"]["name"].endswith("-engine")):
        assert [rule["ports"] for rule in policy["spec"]["ingress"]] == [
            [{"port": "http", "protocol": "TCP"}]]


def test_a_pooling_models_gate_admits_embeddings_a_generating_ones_generate(
    helm: Path, tmp_path: Path,
) -> None:
    values = tmp_path / "embed.yaml"
    values.write_text(yaml.safe_dump({**OWN_MODEL, "models": {
        **OWN_MODEL["models"], "minilm": {"settings": {"task": "embed"}}}}))
    docs = manifests(render(helm, values))
    tasks = {w["metadata"]["labels"]["llm-gateway.io/model"]:
             gate_params(container(w, "gate"))["task"] for w in engine_pods(docs)}
    assert tasks == {"qwen2-5-7b-instruct": "generate", "minilm": "embed"}


@pytest.mark.parametrize("sets,message", [
    (("engineDefaults.extraArgs={--host,0.0.0.0}",), "loopback behind the pod's gate"),
    (("engineDefaults.extraArgs={--port=8001}",), "loopback behind the pod's gate"),
    (("engineDefaults.extraArgs={--api-key,other}",), "loopback behind the pod's gate"),
    (("engineDefaults.gate.enginePort=8001",), "must differ"),
])
def test_values_that_would_expose_vllm_beside_its_gate_fail_the_render(
    helm: Path, sets: tuple[str, ...], message: str,
) -> None:
    args = ["template", "rel", str(CHART), "--set", "exampleModel.enabled=true"]
    for item in sets:
        args += ["--set", item]
    refused = run_helm(helm, *args)
    assert refused.returncode != 0 and message in refused.stderr
