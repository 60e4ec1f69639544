"""Stock vLLM CPU api_servers for the remote-mode e2e test, started as production starts a
CPU replica: ``llm-gateway engine serve`` (the replica gate on the public port, requiring the
API key, in front of vLLM's api_server with the flags of engine/vllm_args.py on loopback), each
bound to cores of its own."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MODEL, REPO, free_port

EMBEDDER = "all-minilm-l6-v2"
KEY = "replica-key-for-the-e2e-test"
KEY_ENV = "LLMGW_TEST_REPLICA_KEY"
STARTUP_TIMEOUT_S = 900


@dataclass
class Replica:
    url: str  # the gate's: what the gateway, probes and Prometheus reach
    engine_url: str  # vLLM's own, on loopback behind the gate
    process: subprocess.Popen[bytes]
    log_path: Path

    def metric(self, family: str, **labels: str) -> float:
        """The sum of one of vLLM's own metric families (the gate's ``/metrics``, no key)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        return sum(sample.value for f in text_string_to_metric_families(text)
                   if f.name == family for sample in f.samples
                   if not sample.name.endswith("_created")
                   and all(sample.labels.get(k) == v for k, v in labels.items()))

    def finished(self) -> int:
        return int(self.metric("vllm:request_success"))

    def kill_tree(self) -> None:
        """SIGKILL the gate, vLLM and its engine processes, as when a pod's node dies."""
        try:
            family = [*psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        self.process.kill()
        for child in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self.process.wait()


def replica_profiles(folder: Path, cores: list[str]) -> None:
    """Per-replica profiles (the test profile, one core set each) and the gateway's."""
    test = yaml.safe_load((folder / "profiles" / "test.yaml").read_text())
    for i, bind in enumerate(cores):
        profile = yaml.safe_load(yaml.safe_dump(test))
        chat = profile.setdefault("models", {}).setdefault(MODEL, {})
        chat["cpu"] = {"threads_bind": bind, "kv_cache_gib": 1, "reserved_cpus": 0}
        profile["models"][EMBEDDER] = {"cpu": {"threads_bind": bind, "kv_cache_gib": 1,
                                               "reserved_cpus": 0}}
        (folder / "profiles" / f"replica-{i}.yaml").write_text(yaml.safe_dump(profile))


def start_replica(folder: Path, tmp: Path, name: str, model: str, profile: str) -> Replica:
    port, engine_port = free_port(), free_port()
    log_path = tmp / f"{name}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "LLMGW_CONFIG_DIR": str(folder), "VLLM_API_KEY": KEY}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "engine", "serve", "--model", model, "--profile", profile,
         "--port", str(port), "--engine-port", str(engine_port), "--drain-s", "5"],
        cwd=REPO, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
    )
    return Replica(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{engine_port}", process,
                   log_path)


def wait_ready(replica: Replica) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            raise RuntimeError(replica.log_path.read_text(errors="replace")[-3000:])
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{replica.url}/health", timeout=5).status_code == 200:
                return
        time.sleep(2)
    raise RuntimeError(f"replica {replica.url} not ready after {STARTUP_TIMEOUT_S} s")


def gateway_profile(folder: Path, chat: list[Replica], embedder: Replica) -> None:
    profile = yaml.safe_load((folder / "profiles" / "test.yaml").read_text())
    models = profile.setdefault("models", {})
    routing = {"health_interval_s": 1.0, "eject_after_failures": 2}
    models.setdefault(MODEL, {}).update(replicas=[r.url for r in chat], routing=routing,
                                        replica_api_key_env=KEY_ENV)
    models[EMBEDDER] = {"replicas": [embedder.url], "replica_api_key_env": KEY_ENV}
    (folder / "profiles" / "remote.yaml").write_text(yaml.safe_dump(profile))


def core_sets() -> list[str]:
    cores = sorted(os.sched_getaffinity(0))
    half = max(1, len(cores) // 2)
    first, second = cores[:half], cores[half:] or cores[:half]
    return [",".join(map(str, first)), ",".join(map(str, second))]
