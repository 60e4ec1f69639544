"""Remote mode end to end: a gateway in front of stock vLLM CPU api_servers.

Three replicas start together, once for the module, as a CPU replica starts in production:
``llm-gateway engine serve`` runs ``python -m vllm.entrypoints.openai.api_server`` with the
flags the chart renders for GPU nodes (engine/vllm_args.py) on loopback, behind the replica
gate (engine/replica_gate.py) on the public port, which requires the API key
(``VLLM_API_KEY``): two of the chat model (one core each) and one of the embedding model. Then
a gateway in remote mode; everything it sends a replica passes the gate. The last test kills a
chat replica.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import psutil
import pytest

from engine.lora.shipped import shipped_adapter
from gateway.metering.pricing import to_pico
from tests.conftest import MODEL, REPO, LiveGateway, make_settings, start_gateway, stop_gateway
from tests.e2e.vllm_replicas import (
    EMBEDDER,
    KEY,
    KEY_ENV,
    STARTUP_TIMEOUT_S,
    Replica,
    core_sets,
    gateway_profile,
    replica_profiles,
    start_replica,
    wait_ready,
)

PRICES = {"prompt": Decimal("0.10"), "completion": Decimal("0.40"), "cached": Decimal("0.05")}
ADAPTER = "smollm2-135m-think"
ADAPTER_PRICE = {"prompt": "1.5", "completion": "6"}

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.own_engine,
              pytest.mark.timeout(STARTUP_TIMEOUT_S + 600)]


@dataclass
class Cluster:
    gateway: LiveGateway
    replicas: list[Replica]  # the chat model's
    embedder: Replica


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("remote")
    folder = tmp / "configs"
    shutil.copytree(REPO / "configs", folder)
    replica_profiles(folder, core_sets())
    replicas: list[Replica] = []
    gateway = None
    try:  # all three load at once: the module's wall time is one load, not three
        for i, model in enumerate((MODEL, MODEL, EMBEDDER)):
            replicas.append(start_replica(folder, tmp, f"replica-{i}", model, f"replica-{i % 2}"))
        for replica in replicas:
            wait_ready(replica)
        gateway_profile(folder, replicas[:2], replicas[2])
        gateway = start_gateway(tmp / "gateway.log", {
            "LLMGW_CONFIG_DIR": str(folder), KEY_ENV: KEY,
            "LLMGW_METERING__DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'ledger.db'}",
        }, profile="remote")
        yield Cluster(gateway, replicas[:2], replicas[2])
    finally:
        if gateway is not None:
            stop_gateway(gateway)
        for replica in replicas:
            if replica.process.poll() is None:
                replica.kill_tree()


def chat(gateway: LiveGateway, content: str, **extra: Any) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}],
            "max_tokens": 8, "temperature": 0, **extra}
    return httpx.post(f"{gateway.v1}/chat/completions", json=body,
                      headers=gateway.admin_headers(), timeout=300)


def complete(gateway: LiveGateway, prompt: str, max_tokens: int = 6) -> httpx.Response:
    body = {"model": MODEL, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    return httpx.post(f"{gateway.v1}/completions", json=body, headers=gateway.admin_headers(),
                      timeout=300)


def eventually(check: Any, timeout_s: float = 60) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.25)
    return False


def total(replicas: list[Replica], family: str) -> int:
    return int(sum(r.metric(family) for r in replicas))


# vLLM routes beside the gateway's: /invocations, /v1/chat/completions and /v1/completions
# generate (the first without vLLM's own key), /tokenize and /pooling answer without it,
# /scale_elastic_ep reconfigures the server.
SIDE_DOORS = {
    "/invocations": {"model": MODEL, "prompt": "Once upon", "max_tokens": 4},
    "/v1/chat/completions": {"model": MODEL, "max_tokens": 4,
                             "messages": [{"role": "user", "content": "Hi"}]},
    "/v1/completions": {"model": MODEL, "prompt": "Once upon", "max_tokens": 4},
    "/tokenize": {"model": MODEL, "prompt": "Once upon"},
    "/pooling": {"model": MODEL, "input": "Once upon"},
    "/scale_elastic_ep": {"new_data_parallel_size": 2},
}


def test_a_replica_admits_only_the_gateways_paths_and_those_only_with_its_key(
    cluster: Cluster,
) -> None:
    replica, keyed = cluster.replicas[0], {"authorization": f"Bearer {KEY}"}
    for (path, body), headers in itertools.product(SIDE_DOORS.items(), ({}, keyed)):
        response = httpx.post(f"{replica.url}{path}", json=body, headers=headers, timeout=60)
        assert response.status_code == 404, (path, headers, response.text)
    pooling = {"model": EMBEDDER, "input": "A cat."}
    assert httpx.post(f"{cluster.embedder.url}/pooling", json=pooling, headers=keyed,
                      timeout=60).status_code == 404
    generate = {"token_ids": [1, 2, 3], "sampling_params": {"max_tokens": 2}}
    for headers in ({}, {"authorization": "Bearer not-the-key"}):
        assert httpx.post(f"{replica.url}/inference/v1/generate", json=generate,
                          headers=headers).status_code == 401
    assert httpx.post(f"{replica.url}/inference/v1/generate", json=generate, headers=keyed,
                      timeout=120).status_code == 200
    assert httpx.get(f"{replica.url}/health").status_code == 200
    assert httpx.get(f"{replica.url}/metrics").status_code == 200  # Prometheus: no key
    # What the gate closes: vLLM itself, reachable on loopback only, generates for anyone.
    direct = httpx.post(f"{replica.engine_url}/invocations", json=SIDE_DOORS["/invocations"],
                        timeout=120)
    assert direct.status_code == 200 and direct.json()["usage"]["completion_tokens"] > 0
    vllm = psutil.Process(replica.process.pid).children()[0].cmdline()
    assert "vllm.entrypoints.openai.api_server" in vllm and "--enable-scale-out" in vllm
    assert vllm[vllm.index("--host") + 1] == "127.0.0.1"


def test_usage_and_cost_are_exact_to_the_replicas_own_token_counts(cluster: Cluster) -> None:
    families = ("vllm:prompt_tokens", "vllm:prompt_tokens_cached", "vllm:generation_tokens")
    before = {f: total(cluster.replicas, f) for f in families}
    billed = {"prompt": 0, "cached": 0, "completion": 0}
    text = "Write a long story about a lighthouse keeper and the ships she watches. " * 24
    for _ in range(2):  # the second turn finds the first one's prefix in the KV cache
        response = chat(cluster.gateway, text, max_tokens=12, temperature=0.7)
        assert response.status_code == 200, response.text
        usage = response.json()["usage"]
        assert response.json()["choices"][0]["finish_reason"] == "length"
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        expected = ((usage["prompt_tokens"] - cached) * PRICES["prompt"]
                    + cached * PRICES["cached"]
                    + usage["completion_tokens"] * PRICES["completion"]).scaleb(-6)
        assert Decimal(response.headers["x-request-cost"]) == expected
        billed["prompt"] += usage["prompt_tokens"]
        billed["cached"] += cached
        billed["completion"] += usage["completion_tokens"]
    assert billed["completion"] == 24 and billed["cached"] > 0
    after = {f: total(cluster.replicas, f) for f in families}
    assert after["vllm:generation_tokens"] - before["vllm:generation_tokens"] == 24
    assert after["vllm:prompt_tokens"] - before["vllm:prompt_tokens"] == billed["prompt"]
    assert after["vllm:prompt_tokens_cached"] - before["vllm:prompt_tokens_cached"] == (
        billed["cached"])


def test_requests_go_to_the_replica_that_reports_less_load(cluster: Cluster) -> None:
    busy, idle = cluster.replicas
    stop = threading.Event()

    def load_directly() -> None:  # as another gateway's long requests would, through the gate
        body = {"token_ids": list(range(100, 110)), "stream": True,
                "sampling_params": {"max_tokens": 1500, "ignore_eos": True}}
        headers = {"authorization": f"Bearer {KEY}"}
        while not stop.is_set():  # one ended (a fast machine): the next one keeps the load
            with httpx.stream("POST", f"{busy.url}/inference/v1/generate", json=body,
                              headers=headers, timeout=300) as response:
                for _ in response.iter_lines():
                    if stop.is_set():
                        return  # closing the stream at the gate aborts it on the replica

    loaders = [threading.Thread(target=load_directly) for _ in range(2)]
    for loader in loaders:
        loader.start()
    try:
        def seen_by_gateway() -> bool:
            states = cluster.gateway.engine_stats()["replicas"]
            return bool(next(s for s in states if s["url"] == busy.url)["load"] >= 2)
        assert eventually(seen_by_gateway, 30)
        before = idle.finished()
        for i in range(3):  # short prompts: no prefix affinity, the load decides
            assert complete(cluster.gateway, f"Fact {i}:").status_code == 200
        # all three on the idle replica (the busy one's count moves too when a loader's
        # stream ends and the next one starts, so it is not compared)
        assert idle.finished() - before == 3
    finally:
        stop.set()
        for loader in loaders:
            loader.join(timeout=60)
    assert eventually(lambda: busy.metric("vllm:num_requests_running") == 0)


def test_conversation_turns_return_to_the_replica_holding_their_prefix(cluster: Cluster) -> None:
    messages = [
        {"role": "system", "content": "You are a terse assistant for a museum of clocks. " * 4},
        {"role": "user", "content": "Which clock in the museum is the oldest?"},
    ]
    homes = []
    for turn in range(3):
        before = [r.finished() for r in cluster.replicas]
        body = {"model": MODEL, "messages": messages, "max_tokens": 12, "temperature": 0}
        response = httpx.post(f"{cluster.gateway.v1}/chat/completions", json=body,
                              headers=cluster.gateway.admin_headers(), timeout=300)
        assert response.status_code == 200, response.text
        served = [r.finished() - b for r, b in zip(cluster.replicas, before, strict=True)]
        homes.append(served.index(1))
        answer = response.json()["choices"][0]["message"]["content"]
        messages += [{"role": "assistant", "content": answer},
                     {"role": "user", "content": f"And the next one (turn {turn})?"}]
    assert len(set(homes)) == 1, homes


def test_client_disconnect_aborts_on_the_replica_and_bills_what_it_made(
    cluster: Cluster,
) -> None:
    before = total(cluster.replicas, "vllm:generation_tokens")
    body = {"model": MODEL, "stream": True, "max_tokens": 1500, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Tell a very long story."}]}
    with httpx.stream("POST", f"{cluster.gateway.v1}/chat/completions", json=body,
                      headers=cluster.gateway.admin_headers(), timeout=300) as response:
        request_id = response.headers["x-request-id"]
        for n, _line in enumerate(response.iter_lines()):
            if n >= 8:
                break  # leaving the block closes the connection: a client abort
    assert eventually(lambda: total(cluster.replicas, "vllm:num_requests_running") == 0, 30)
    row = ledger_row(cluster, request_id)
    generated = total(cluster.replicas, "vllm:generation_tokens") - before
    assert row["status"] == "aborted" and 0 < row["completion_tokens"] < 1500
    assert row["completion_tokens"] == generated  # every token the replica made, no more


def ledger_row(cluster: Cluster, request_id: str) -> dict[str, Any]:
    import sqlite3

    path = cluster.gateway.env["LLMGW_METERING__DATABASE_URL"].split("///", 1)[1]
    for _ in range(40):
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM ledger WHERE id = ?", (request_id,)).fetchone()
        if row is not None and row["settled_at"] is not None:
            return dict(row)
        time.sleep(0.25)
    raise AssertionError(f"no settled ledger row for {request_id}")


def test_embeddings_are_pooled_by_the_remote_replica(cluster: Cluster) -> None:
    before = int(cluster.embedder.metric("vllm:prompt_tokens"))
    response = httpx.post(f"{cluster.gateway.v1}/embeddings", headers=cluster.gateway.
                          admin_headers(), json={"model": EMBEDDER, "input": ["A cat.", "Dogs."]},
                          timeout=120)
    assert response.status_code == 200, response.text
    vectors = [item["embedding"] for item in response.json()["data"]]
    assert [len(v) for v in vectors] == [384, 384]
    assert abs(sum(x * x for x in vectors[0]) - 1.0) < 1e-3  # normalised by the pooler
    billed = response.json()["usage"]["prompt_tokens"]
    assert int(cluster.embedder.metric("vllm:prompt_tokens")) - before == billed


def _vllm_split(text: str) -> tuple[str | None, str | None]:
    """vLLM's own olmo3 reasoning parser over ``text``, as ``vllm serve --reasoning-parser
    olmo3`` splits an answer."""
    from transformers import AutoTokenizer
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.reasoning import ReasoningParserManager

    tokenizer: Any = AutoTokenizer.from_pretrained(make_settings().model_path(MODEL))
    parser = ReasoningParserManager.get_reasoning_parser("olmo3")(tokenizer)
    request = ChatCompletionRequest(model=ADAPTER, messages=[])
    split: tuple[str | None, str | None] = parser.extract_reasoning(text, request)
    return split


def test_adapter_loads_on_one_replica_and_answers_as_vllm_serve_with_its_parser(
    cluster: Cluster,
) -> None:
    admin = cluster.gateway.admin_headers()
    created = httpx.post(f"{cluster.gateway.base_url}/admin/adapters", headers=admin, json={
        "name": ADAPTER, "base_model": MODEL, "path": str(shipped_adapter(ADAPTER)),
        "price": ADAPTER_PRICE, "reasoning_parser": "olmo3"}, timeout=300)
    assert created.status_code == 201, created.text
    holding = [s["url"] for s in cluster.gateway.engine_stats()["replicas"]
               if ADAPTER in s["adapters"]]
    assert len(holding) == 1  # loaded on one replica at registration
    holder = next(r for r in cluster.replicas if r.url == holding[0])
    body = {"model": ADAPTER, "messages": [{"role": "user", "content": "What is 12 + 30?"}],
            "max_tokens": 96, "temperature": 0}
    ours = httpx.post(f"{cluster.gateway.v1}/chat/completions", json=body, headers=admin,
                      timeout=300)
    assert ours.status_code == 200, ours.text
    reference = httpx.post(f"{holder.engine_url}/v1/chat/completions", json=body, timeout=300,
                           headers={"authorization": f"Bearer {KEY}"}).json()
    message, usage = ours.json()["choices"][0]["message"], ours.json()["usage"]
    reasoning, content = _vllm_split(reference["choices"][0]["message"]["content"])
    assert reasoning and "42" in reasoning
    assert (message["reasoning_content"], message["content"]) == (reasoning, content)
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (
        reference["usage"]["prompt_tokens"], reference["usage"]["completion_tokens"])
    assert 0 < usage["completion_tokens_details"]["reasoning_tokens"] < usage["completion_tokens"]
    row = ledger_row(cluster, ours.headers["x-request-id"])
    cost = (usage["prompt_tokens"] * Decimal(ADAPTER_PRICE["prompt"])
            + usage["completion_tokens"] * Decimal(ADAPTER_PRICE["completion"])).scaleb(-6)
    assert (row["adapter"], row["cost_pico"]) == (ADAPTER, to_pico(cost))
    states = {s["url"]: s for s in cluster.gateway.engine_stats()["replicas"]}
    assert [u for u, s in states.items() if ADAPTER in s["adapters"]] == holding  # reused


def test_replica_killed_then_requests_fail_over_before_their_first_token(
    cluster: Cluster,
) -> None:
    victim, survivor = cluster.replicas
    before = survivor.finished()
    victim.kill_tree()  # the gateway still counts it healthy: no health round has failed yet
    results: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda i=i: results.append(
        chat(cluster.gateway, f"After the failure, question {i}."))) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert [r.status_code for r in results] == [200] * 4, [r.text for r in results]
    assert all(r.json()["usage"]["completion_tokens"] > 0 for r in results)
    assert survivor.finished() - before == 4
    states = {s["url"]: s for s in cluster.gateway.engine_stats()["replicas"]}
    assert not states[victim.url]["healthy"] and states[victim.url]["errors_total"] >= 1
    assert httpx.get(f"{cluster.gateway.base_url}/ready").status_code == 200
