"""Remote mode end to end: a gateway routing over two real vLLM CPU engine replicas.

This module starts two ``llm-gateway engine serve`` processes (two engines: the feature is
routing between engine replicas, so it cannot use the shared session gateway) plus a
gateway in remote mode, once for the module. The last test kills one replica with SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from gateway.serving.rendering import HfPromptRenderer, RenderedMessage
from gateway.settings import load_settings
from tests.conftest import MODEL, REPO, LiveGateway, free_port, start_gateway, stop_gateway

STARTUP_TIMEOUT_S = 900
MIN_FREE_GIB = 8

# Two engines start one after the other inside the first test's setup: allow for that.
pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.own_engine,
              pytest.mark.timeout(2 * STARTUP_TIMEOUT_S + 600)]


@dataclass
class Replica:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def readiness(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/ready", timeout=10).json()
        return body

    def requests_total(self) -> int:
        return int(self.readiness()["requests_total"])

    def kill_tree(self) -> None:
        """SIGKILL the server and its engine processes, as when a pod's node dies."""
        try:
            family = [*psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        self.process.kill()
        for child in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self.process.wait()


@dataclass
class Cluster:
    gateway: LiveGateway
    replicas: list[Replica]


def wait_for_memory() -> None:
    """Each engine takes ~3-5 GB: wait (up to 10 min) for room rather than exhaust the box."""
    deadline = time.monotonic() + 600
    while psutil.virtual_memory().available < MIN_FREE_GIB * 2**30 and time.monotonic() < deadline:
        time.sleep(10)


def start_replica(tmp: Path, name: str, env: dict[str, str]) -> Replica:
    wait_for_memory()
    port = free_port()
    log_path = tmp / f"{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "engine", "serve", "--model", MODEL,
         "--profile", "test", "--port", str(port), "--drain-s", "10"],
        cwd=REPO, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
    )
    return Replica(f"http://127.0.0.1:{port}", process, log_path)


def wait_ready(replica: Replica) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            raise RuntimeError(replica.log_path.read_text(errors="replace")[-3000:])
        try:
            if httpx.get(f"{replica.url}/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise RuntimeError(f"replica {replica.url} not ready after {STARTUP_TIMEOUT_S} s")


def remote_config(tmp: Path, urls: list[str]) -> Path:
    """A copy of configs/ whose `remote` profile is the test profile plus replica URLs."""
    folder = tmp / "configs"
    shutil.copytree(REPO / "configs", folder)
    profile = yaml.safe_load((folder / "profiles" / "test.yaml").read_text())
    model = profile.setdefault("models", {}).setdefault(MODEL, {})
    model["replicas"] = urls
    model["routing"] = {"health_interval_s": 0.5, "eject_after_failures": 1}
    (folder / "profiles" / "remote.yaml").write_text(yaml.safe_dump(profile))
    return folder


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("remote")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    replicas: list[Replica] = []
    gateway = None
    try:
        for name in ("replica-a", "replica-b"):  # one at a time: starting is the memory peak
            replicas.append(start_replica(tmp, name, env))
            wait_ready(replicas[-1])
        folder = remote_config(tmp, [r.url for r in replicas])
        gateway = start_gateway(tmp / "gateway.log", {
            "LLMGW_CONFIG_DIR": str(folder),
            "LLMGW_METERING__DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'ledger.db'}",
        }, profile="remote")
        yield Cluster(gateway, replicas)
    finally:
        if gateway is not None:
            stop_gateway(gateway)
        for replica in replicas:
            if replica.process.poll() is None:
                replica.kill_tree()


def chat(gateway: LiveGateway, messages: list[dict[str, str]], **extra: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": messages, "max_tokens": 8, "temperature": 0, **extra}
    return httpx.post(f"{gateway.v1}/chat/completions", json=body,
                      headers=gateway.admin_headers(), timeout=300)


def generation_tokens(replicas: list[Replica]) -> int:
    return sum(int(r.readiness()["stats"]["generation_tokens_total"]) for r in replicas)


def eventually(check: Any, timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return False


def test_remote_usage_is_exact_from_the_replicas_token_ids(cluster: Cluster) -> None:
    messages = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
    before = generation_tokens(cluster.replicas)
    response = chat(cluster.gateway, messages, max_tokens=12)
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    assert response.json()["choices"][0]["finish_reason"] == "length"
    assert usage["completion_tokens"] == 12
    renderer = HfPromptRenderer.from_folder(load_settings(profile="test").model_path(MODEL))
    expected_prompt = renderer.render_chat([RenderedMessage("user", messages[0]["content"])])
    assert usage["prompt_tokens"] == len(expected_prompt)
    # The replicas' own vLLM counters saw exactly the tokens the gateway billed.
    assert eventually(lambda: generation_tokens(cluster.replicas) - before == 12)


def test_concurrent_requests_spread_over_both_replicas(cluster: Cluster) -> None:
    before = [r.requests_total() for r in cluster.replicas]
    results: list[int] = []

    def one(i: int) -> None:
        messages = [{"role": "user", "content": f"Request {i}: name a color and a fruit."}]
        results.append(chat(cluster.gateway, messages, max_tokens=24).status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert results == [200] * 8
    served = [r.requests_total() - b for r, b in zip(cluster.replicas, before, strict=True)]
    assert sum(served) == 8
    assert min(served) >= 1, served


def test_conversation_turns_return_to_the_replica_holding_their_prefix(cluster: Cluster) -> None:
    messages = [
        {"role": "system", "content": "You are a terse assistant for a museum of clocks. " * 4},
        {"role": "user", "content": "Which clock in the museum is the oldest?"},
    ]
    homes = []
    for turn in range(3):
        before = [r.requests_total() for r in cluster.replicas]
        response = chat(cluster.gateway, messages, max_tokens=16)
        assert response.status_code == 200, response.text
        after = [r.requests_total() for r in cluster.replicas]
        homes.append([a - b for a, b in zip(after, before, strict=True)].index(1))
        answer = response.json()["choices"][0]["message"]["content"]
        messages += [{"role": "assistant", "content": answer},
                     {"role": "user", "content": f"And the next one (turn {turn})?"}]
    assert len(set(homes)) == 1, homes


def stream_until_closed(gateway: LiveGateway, opened: threading.Event,
                        close: threading.Event, lines: list[str]) -> None:
    body = {"model": MODEL, "stream": True, "max_tokens": 1500,
            "messages": [{"role": "user", "content": "Tell a very long story."}]}
    try:
        with httpx.stream("POST", f"{gateway.v1}/chat/completions", json=body,
                          headers=gateway.admin_headers(), timeout=300) as response:
            for line in response.iter_lines():
                lines.append(line)
                if sum(1 for x in lines if x.startswith("data: ")) >= 4:
                    opened.set()
                if close.is_set():
                    return  # leaving the block closes the connection: a client abort
    except httpx.HTTPError as exc:
        lines.append(f"transport error: {exc}")
    finally:
        opened.set()


def serving_replica(cluster: Cluster) -> Replica:
    busy = [r for r in cluster.replicas if r.readiness()["in_flight"] > 0]
    assert len(busy) == 1, [r.readiness()["in_flight"] for r in cluster.replicas]
    return busy[0]


def test_client_abort_reaches_the_replica(cluster: Cluster) -> None:
    opened, close, lines = threading.Event(), threading.Event(), list[str]()
    reader = threading.Thread(target=stream_until_closed, args=(cluster.gateway, opened,
                                                                close, lines))
    reader.start()
    assert opened.wait(timeout=300)
    replica = serving_replica(cluster)
    assert replica.readiness()["stats"]["unfinished_requests"] == 1
    close.set()
    reader.join(timeout=60)
    assert eventually(lambda: replica.readiness()["in_flight"] == 0)
    assert eventually(lambda: replica.readiness()["stats"]["unfinished_requests"] == 0)


def test_replica_killed_mid_stream_then_new_requests_succeed_on_the_other(
    cluster: Cluster,
) -> None:
    opened, close, lines = threading.Event(), threading.Event(), list[str]()
    reader = threading.Thread(target=stream_until_closed, args=(cluster.gateway, opened,
                                                                close, lines))
    reader.start()
    assert opened.wait(timeout=300)
    victim = serving_replica(cluster)
    survivor = next(r for r in cluster.replicas if r is not victim)
    victim.kill_tree()
    reader.join(timeout=120)
    assert not reader.is_alive(), "the client stream hung after its replica died"
    events = [line for line in lines if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]", lines[-5:]
    assert any('"error"' in line for line in events)  # the failure is reported in-band

    before = survivor.requests_total()
    for i in range(4):
        messages = [{"role": "user", "content": f"After the failure, question {i}."}]
        response = chat(cluster.gateway, messages)
        assert response.status_code == 200, response.text
        assert response.json()["usage"]["completion_tokens"] > 0
    assert survivor.requests_total() - before == 4
    assert httpx.get(f"{cluster.gateway.base_url}/ready").status_code == 200
