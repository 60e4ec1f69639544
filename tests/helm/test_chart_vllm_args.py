"""The chart's engines run the official vLLM image with flags rendered from the settings.

The chart renders each model's ``vllm serve`` flags in Go templates (``llm-gateway.vllmArgs``);
the gateway's Python writes them once (``engine.vllm_args.vllm_serve_args``). Both are parsed by
vLLM's own server parser (no GPU needed) and must be equal, for every model of every values file
(GPU ones included) and for a model per engine setting moved off its default, so the two cannot
drift apart unnoticed. The chart's defaults are EngineOptions' own.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.config import EngineOptions
from engine.vllm_args import vllm_serve_args
from gateway.settings import load_settings
from tests.helm.chart import CHART, GOOD_VALUES, container, find, install_tools, manifests, render

pytestmark = pytest.mark.slow  # imports vLLM's argument parser (no engine starts)

# One model per engine setting moved off its default (the chart's values: settings + engine).
VARIANTS: dict[str, tuple[set[str], dict[str, Any], dict[str, Any]]] = {
    "v-embed": ({"task"}, {"task": "embed", "max_model_len": 256}, {}),
    "v-dtype": ({"dtype", "enforce_eager", "max_num_seqs"},
                {"dtype": "bfloat16", "enforce_eager": False, "max_num_seqs": 256}, {}),
    "v-awq": ({"quantization", "gpu_memory_utilization"},
              {"quantization": "awq_marlin", "gpu_memory_utilization": 0.85}, {}),
    "v-tp": ({"tensor_parallel_size", "max_model_len"},
             {"tensor_parallel_size": 2, "max_model_len": 131072}, {"gpus": 2}),
    "v-priority": ({"scheduling_policy"}, {"scheduling_policy": "priority"}, {}),
    "v-ngram": ({"speculation"}, {"speculation": {
        "method": "ngram", "num_speculative_tokens": 5, "prompt_lookup_min": 1,
        "prompt_lookup_max": 3}}, {}),
    "v-draft": ({"speculation"}, {"speculation": {
        "method": "draft_model", "draft_path": "drafts/small", "max_batch_size": 16,
        "draft_under_load": "fill", "acceptance_floor": 0.2, "acceptance_window_s": 60}}, {}),
    "v-eagle": ({"speculation"}, {"speculation": {
        "method": "eagle3", "draft_path": "/models/eagle", "max_batch_size": 8}}, {}),
    "v-cpu": ({"cpu"}, {"cpu": {"threads_bind": "0-3", "reserved_cpus": 1, "kv_cache_gib": 6}},
              {"gpus": 0}),
    "v-lora": (set(), {"max_loras": 4, "max_lora_rank": 32}, {}),  # not an EngineOptions field
}
DEPLOYMENT_FLAGS = {"host", "port", "shutdown_timeout"}  # the pod's, not the settings'


@pytest.fixture(scope="module")
def helm() -> Path:
    return install_tools()


def parse(args: list[str]) -> dict[str, Any]:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser())  # type: ignore[no-untyped-call]
    return vars(parser.parse_args(args))


def engines(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")
            and d["metadata"]["labels"].get("app.kubernetes.io/component") == "engine"]


def python_args(docs: list[dict[str, Any]], model: str, extra: list[str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the gateway's Python makes of the engine's own ConfigMap (its settings)."""
    folder = tmp_path / model
    (folder / "profiles").mkdir(parents=True)
    data = find(docs, "ConfigMap", f"engine-{model}-config")["data"]
    (folder / "models.yaml").write_text(data["models.yaml"])
    (folder / "profiles" / "kubernetes.yaml").write_text(data["profile.yaml"])
    monkeypatch.setenv("LLMGW_MODEL_CACHE", "/models")  # as the chart's pods set it
    config = load_settings(folder, "kubernetes").engine_config(model)
    return vllm_serve_args(dataclasses.replace(config, extra_args=(*config.extra_args, *extra)))


def check_engines(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    docs = manifests(text)
    for workload in engines(docs):
        model = workload["metadata"]["labels"]["llm-gateway.io/model"]
        args = container(workload, "engine")["args"]
        chart = parse(args)
        deployment = args.index("--host")
        extra = args[deployment + 6:]
        assert args[deployment:deployment + 6:2] == ["--host", "--port", "--shutdown-timeout"]
        expected = parse(python_args(docs, model, extra, tmp_path, monkeypatch))
        differ = {k for k in chart if chart[k] != expected[k]} - DEPLOYMENT_FLAGS
        assert not differ, {k: (chart[k], expected[k]) for k in differ}
    return len(engines(docs))


@pytest.mark.parametrize("values", GOOD_VALUES, ids=lambda p: p.stem)
def test_rendered_vllm_flags_equal_the_gateways_for_every_values_file(
    helm: Path, values: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert check_engines(render(helm, values), tmp_path, monkeypatch) >= 1


def test_each_engine_setting_moves_the_flags_as_the_gateways_python_does(
    helm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    covered = set().union(*(fields for fields, _, _ in VARIANTS.values()))
    assert covered == {f.name for f in dataclasses.fields(EngineOptions)}
    values = tmp_path / "variants.yaml"
    values.write_text(yaml.safe_dump({"defaultModel": "v-embed", "models": {
        name: {"settings": settings, "engine": engine}
        for name, (_, settings, engine) in VARIANTS.items()}}))
    assert check_engines(render(helm, values), tmp_path, monkeypatch) == len(VARIANTS)


def test_engines_with_lora_let_the_gateway_load_adapters_and_others_do_not(
    helm: Path, tmp_path: Path,
) -> None:
    values = tmp_path / "lora.yaml"
    values.write_text(yaml.safe_dump({"defaultModel": "v-lora", "models": {
        name: {"settings": VARIANTS[name][1]} for name in ("v-lora", "v-priority")}}))
    runtime = {}
    for workload in engines(manifests(render(helm, values))):
        main = container(workload, "engine")
        env = {e["name"]: e.get("value") for e in main["env"]}
        model = workload["metadata"]["labels"]["llm-gateway.io/model"]
        runtime[model] = (env.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING"),
                          "--enable-lora" in main["args"])
    assert runtime == {"v-lora": ("True", True), "v-priority": (None, False)}


def test_chart_defaults_are_the_engine_options_defaults() -> None:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    block = re.search(r'define "llm-gateway.engineOptionDefaults" -}}\n(.*?)\n\{\{- end',
                      helpers, re.S)
    assert block is not None
    defaults = dataclasses.asdict(EngineOptions())
    for nested in ("speculation", "cpu"):
        defaults[nested] = {k: v for k, v in defaults[nested].items()}
    assert yaml.safe_load(block.group(1)) == defaults


def test_engines_run_the_official_image_with_the_api_key_from_the_secret(helm: Path) -> None:
    docs = manifests(render(helm, CHART / "ci" / "gpu-default-values.yaml"))
    [workload] = engines(docs)
    main = container(workload, "engine")
    assert main["image"] == "vllm/vllm-openai:v0.32.0" and main["command"] == ["vllm", "serve"]
    env = {e["name"]: e for e in main["env"]}
    key_ref = env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]
    gateway = container(find(docs, "Deployment", "-gateway-gateway"), "gateway")
    gateway_ref = {e["name"]: e for e in gateway["env"]}["LLMGW_ENGINE_API_KEY"]
    assert gateway_ref["valueFrom"]["secretKeyRef"] == key_ref
    assert find(docs, "Secret")["stringData"][key_ref["key"]]  # generated
    models = yaml.safe_load(find(docs, "ConfigMap", "llm-gateway-config")["data"]["models.yaml"])
    settings = models["models"]["smollm2-135m-instruct"]
    assert settings["replica_api_key_env"] == "LLMGW_ENGINE_API_KEY"
    init = workload["spec"]["template"]["spec"]["initContainers"][0]
    assert init["image"].startswith("llm-gateway/llm-gateway-cpu:")  # GGUF: modelPrep


def test_cpu_engines_get_the_cpu_backends_settings(helm: Path) -> None:
    docs = manifests(render(helm, CHART / "ci" / "cpu-only-values.yaml"))
    [workload] = engines(docs)
    main = container(workload, "engine")
    assert main["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "4" and env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert "VLLM_CPU_OMP_THREADS_BIND" not in env  # auto: vLLM's own choice
