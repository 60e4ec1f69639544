"""Batch API helpers for the fuzz: a JSONL file of fuzzed lines uploaded and run as a batch,
its result lines judged like online answers (``probe.problems``)."""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx

from tests.e2e.hostile.changes import Json
from tests.e2e.hostile.probe import Exchange, encode, problems

TERMINAL = ("completed", "failed", "cancelled", "expired")


def line_body(body: Json, model: str) -> Json:
    """A batch line's body must be an object naming a model by a string, or the whole file
    is refused before a line runs (tests/gateway/batches cover that); the rest is hostile."""
    return body if isinstance(body.get("model"), str) else {**body, "model": model}


def create_batch(client: httpx.Client, endpoint: str, bodies: list[Json]) -> Json:
    """Upload the bodies as a JSONL file (custom ids ``line-<index>``) and create a batch."""
    lines = [encode({"custom_id": f"line-{i}", "method": "POST", "url": endpoint, "body": b})
             for i, b in enumerate(bodies)]
    upload = client.post("/v1/files", data={"purpose": "batch"},
                         files={"file": ("fuzz.jsonl", b"\n".join(lines) + b"\n")})
    assert upload.status_code == 200, upload.text
    batch = client.post("/v1/batches", json={"input_file_id": upload.json()["id"],
                                             "endpoint": endpoint, "completion_window": "24h"})
    assert batch.status_code == 200, batch.text
    created: Json = batch.json()
    return created


def refused_lines(batch: Json, count: int) -> tuple[set[int], list[str]]:
    """A batch refused at validation fails at once, its ``errors`` naming each bad line
    (1-based): the indexes of those lines, and what is wrong with the errors themselves."""
    if batch["status"] != "failed":
        return set(), []
    errors = (batch.get("errors") or {}).get("data") or []
    named = {e.get("line") for e in errors if isinstance(e, dict)}
    found = [f"batch refused at validation with an error naming no line: {e}"
             for e in errors if not isinstance(e, dict) or not isinstance(e.get("line"), int)
             or not 1 <= e["line"] <= count or not e.get("code") or not e.get("message")]
    if not errors:
        found.append(f"batch failed with no errors: {batch}")
    return {line - 1 for line in named if isinstance(line, int)}, found


def wait_batch(client: httpx.Client, batch_id: str, deadline: float) -> Json:
    while True:
        batch: Json = client.get(f"/v1/batches/{batch_id}").json()
        if batch["status"] in TERMINAL:
            return batch
        assert time.monotonic() < deadline, f"batch not done in time: {batch}"
        time.sleep(0.5)


def result_lines(client: httpx.Client, batch: Json) -> list[Json]:
    lines = []
    for key in ("output_file_id", "error_file_id"):
        if batch.get(key):
            content = client.get(f"/v1/files/{batch[key]}/content")
            assert content.status_code == 200, content.text
            lines += [json.loads(line) for line in content.text.splitlines() if line.strip()]
    return lines


def _line_exchange(endpoint: str, body: Json, result: Json) -> Exchange:
    response = result["response"]
    text = json.dumps(response["body"])
    return Exchange(endpoint, encode(body).decode("ascii")[:700], response["status_code"],
                    text, response.get("request_id"), streamed=False)


def batch_problems(endpoint: str, bodies: list[Json], batch: Json,
                    results: list[Json]) -> tuple[list[str], list[Exchange]]:
    found = []
    if batch["status"] != "completed":
        found.append(f"{endpoint} batch ended {batch['status']}: {batch.get('errors')}")
    ids = Counter(r["custom_id"] for r in results)
    expected = {f"line-{i}" for i in range(len(bodies))}
    if set(ids) != expected or any(n != 1 for n in ids.values()):
        found.append(f"{endpoint} batch result lines {sorted(ids.items())}, expected one each")
    exchanges = [_line_exchange(endpoint, bodies[int(r["custom_id"].split("-")[1])], r)
                 for r in results if r["custom_id"] in expected]
    for exchange in exchanges:
        found += [f"batch line: {p}\n{exchange.describe()}" for p in problems(exchange)]
    return found, exchanges
