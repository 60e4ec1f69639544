"""The processes under test, each pinned to a core (``taskset``) and always stopped.

- the stubs (bench/stubs), a rate set per workload through ``POST /stub/rate``;
- the gateway, ``python -m cli serve``, in its production
  configuration: auth on (an admin key, a virtual key with RPM, TPM, budget and parallel
  limits), limits through Redis, the ledger in a fresh PostgreSQL database, metrics, JSON
  access logs and the batch worker as configured; one model in remote mode (the replica
  stub) and one upstream (the OpenAI stub);
- LiteLLM's proxy (bench/litellm/setup.sh's environment), one worker, in front of the same
  OpenAI stub, with a master key and no database.

CPU time is read from /proc for the process and its descendants; memory is the main
process's resident set. The gateway runs from the tree this bench runs from: run the bench
from a snapshot of a commit (``git archive``) so others' uncommitted edits in a shared
checkout are not what is measured.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.targets import REPO, free_port
from gateway.settings import load_settings

REPLICA_KEY, UPSTREAM_KEY = "bench-replica-key", "bench-upstream-key"
RELAY_MODEL = "relay-stub"
LITELLM_VENV = Path(os.environ.get("LLMGW_BENCH_LITELLM_VENV", REPO / ".venv-litellm"))
TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command name (field 3 onwards)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2:].split()


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def cpu_seconds(self) -> float:
        total = 0
        for pid in [self.process.pid, *_descendants(self.process.pid)]:
            try:
                fields = _stat(pid)
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / TICK

    def rss_bytes(self) -> int:
        """The resident set of the serving process (the deepest single process: ``taskset``
        execs, so it is the process itself)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def settle(self, idle_cores: float = 0.05, timeout_s: float = 300) -> float:
        """Wait until the process tree is idle (a gateway starts its planning workers in the
        background after /ready: seconds of imports); returns the seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            before = self.cpu_seconds()
            time.sleep(2)
            if (self.cpu_seconds() - before) / 2 < idle_cores:
                break
        return round(time.monotonic() - started, 1)

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])


def start(name: str, command: list[str], core: int | None, ready: str, logs: Path,
          env: dict[str, str] | None = None, cwd: Path = REPO,
          timeout_s: float = 180) -> Server:
    """Start ``command`` (pinned to ``core``) in its own process group; wait for ``ready``."""
    pinned = (["taskset", "-c", str(core)] if core is not None and shutil.which("taskset")
              else [])
    log = logs / f"{name}.log"
    process = subprocess.Popen([*pinned, *command], cwd=cwd, env={**os.environ, **(env or {})},
                               stdout=log.open("wb"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    server = Server(name, process, ready.split("/", 3)[0] + "//" + ready.split("/", 3)[2], log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{server.tail()}")
        try:
            if httpx.get(ready, timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"{name} not ready after {timeout_s:.0f} s:\n{server.tail()}")


def start_stub(module: str, key: str, core: int | None, logs: Path) -> Server:
    port = free_port()
    command = [sys.executable, "-m", f"bench.stubs.{module}", "--port", str(port),
               "--api-key", key]
    return start(module, command, core, f"http://127.0.0.1:{port}/health", logs)


def set_rate(stub: Server, tokens_per_s: float) -> None:
    httpx.post(f"{stub.url}/stub/rate", json={"tokens_per_s": tokens_per_s},
               timeout=10).raise_for_status()


def _models(source: Path, replica_url: str) -> tuple[str, dict[str, Any]]:
    """models.yaml: every configured model off but the default one, served remotely."""
    settings = load_settings(config_dir=source / "configs", profile="dev")
    chosen = settings.default_model or next(iter(settings.models))
    models = {name: {**model.to_dict(), "enabled": False}
              for name, model in settings.models.items()}
    template = settings.chat_template(chosen)
    models[chosen] = {
        **settings.models[chosen].to_dict(), "enabled": True,
        "path": str(settings.model_path(chosen)),
        "chat_template": str(template) if template else None,
        "replicas": [replica_url], "replica_api_key_env": "BENCH_REPLICA_KEY",
        "max_num_seqs": 4096}  # a GPU replica's batch: the gateway's fair queue never waits
    return chosen, {"default_model": chosen, "models": models}


def _profile(admin_key: str, database_url: str, upstream_url: str, data_dir: Path,
             chosen: str) -> dict[str, Any]:
    price = {"prompt": "0.15", "completion": "0.60"}
    return {
        "auth": {"enabled": True, "admin_key": admin_key},
        "metering": {"database_url": database_url, "redis_url": "redis://127.0.0.1:6379/7",
                     "instance_id": "bench-overhead"},
        "data_dir": str(data_dir),
        "limits": {"max_in_flight": 4096},
        "upstreams": {RELAY_MODEL: {"base_url": f"{upstream_url}/v1", "model": "stub",
                                    "api_key_env": "BENCH_UPSTREAM_KEY",
                                    "encoding": "o200k_base"}},
        "prices": {"models": {chosen: price, RELAY_MODEL: price}},
    }


@dataclass(frozen=True)
class Gateway:
    server: Server
    model: str
    admin_key: str
    key: str  # a tenant's virtual key, with limits


def start_gateway(source: Path, replica: Server, upstream: Server, database_url: str,
                  core: int | None, logs: Path, workers: int = 1) -> Gateway:
    folder = logs / "gateway-config"
    (folder / "profiles").mkdir(parents=True, exist_ok=True)
    for path in (source / "configs").glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    chosen, models = _models(source, replica.url)
    (folder / "models.yaml").write_text(yaml.safe_dump(models, sort_keys=False))
    admin = "bench-admin-" + secrets.token_hex(12)
    profile = _profile(admin, database_url, upstream.url, logs / "gateway-data", chosen)
    (folder / "profiles" / "bench-overhead.yaml").write_text(yaml.safe_dump(profile))
    port = free_port()
    env = {"LLMGW_CONFIG_DIR": str(folder), "PYTHONPATH": str(source), "HF_HUB_OFFLINE": "1",
           "BENCH_REPLICA_KEY": REPLICA_KEY, "BENCH_UPSTREAM_KEY": UPSTREAM_KEY}
    command = [sys.executable, "-m", "cli", "serve", "--profile", "bench-overhead",
               "--port", str(port), *(["--workers", str(workers)] if workers > 1 else [])]
    server = start("gateway", command, core, f"http://127.0.0.1:{port}/ready", logs, env,
                   cwd=source, timeout_s=300)
    limits = {"tenant": "bench", "rpm": 10_000_000, "tpm": 2_000_000_000,
              "budget_usd": "100000", "max_parallel_requests": 100_000}
    response = httpx.post(f"{server.url}/admin/keys", json=limits, timeout=30,
                          headers={"authorization": f"Bearer {admin}"})
    response.raise_for_status()
    server.settle()
    return Gateway(server, chosen, admin, str(response.json()["key"]))


def start_litellm(upstream: Server, core: int | None, logs: Path) -> tuple[Server, str]:
    """LiteLLM's proxy without a database (its best case), master key on."""
    master = "sk-bench-" + secrets.token_hex(12)
    config = {
        "model_list": [{"model_name": RELAY_MODEL, "litellm_params": {
            "model": "openai/stub", "api_base": f"{upstream.url}/v1",
            "api_key": UPSTREAM_KEY}}],
        "general_settings": {"master_key": master},
        "litellm_settings": {"drop_params": True, "set_verbose": False},
    }
    path = logs / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR",
           "PATH": f"{LITELLM_VENV / 'bin'}:{os.environ.get('PATH', '')}"}
    command = [str(LITELLM_VENV / "bin" / "litellm"), "--config", str(path), "--port",
               str(port), "--num_workers", "1"]
    server = start("litellm", command, core, f"http://127.0.0.1:{port}/health/readiness",
                   logs, env, timeout_s=300)
    server.settle()
    return server, master
