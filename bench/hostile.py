"""A hostile client against the event loop: ``/health`` latency and a stream's
inter-token gaps, idle and while one client floods the gateway with maximum-size
schemas, tools and messages (issue #30).

``python -m bench.hostile --tree before=/tmp/before --tree process=. --tree thread=.:thread``
starts a real gateway (profile ``test``, chat only) from each tree in turn (a tree is a
checkout; ``:thread`` runs it with ``planning.executor: thread``), measures idle p50/p99 of
``GET /health`` (every 50 ms) and of the gaps between a greedy stream's content chunks
(streams back to back), then the same while another process sends the hostile bodies as
fast as it can, ``--concurrency`` at once, and writes
``bench/results/<date>-<machine>-hostile.{json,md}``. Goal: under the flood both p99s stay
within 2x their idle p99. Every variant runs on the same machine in one run, so a shared
machine's noise hits them alike, but it is noise all the same: record it with ``--note``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from bench.hostile_load import (
    flood_process,
    measure,
    messages_body,
    schema_body,
    tools_body,
    verdict,
)
from bench.machine import describe
from bench.report import save_run
from bench.served_gateway import served_gateway
from bench.targets import REPO, free_port
from gateway.settings import LimitSettings, load_settings

MODEL = "smollm2-135m-instruct"
ADMIN_KEY = "test-admin-key-0123456789"  # the test profile's
READY_TIMEOUT_S = 900


@dataclass(frozen=True)
class Variant:
    name: str
    tree: Path
    executor: str | None = None  # planning.executor; None: the tree's default

    @classmethod
    def parse(cls, text: str) -> Variant:
        """``name=path`` or ``name=path:executor``."""
        name, _, where = text.partition("=")
        path, _, executor = where.partition(":")
        if not name or not path:
            raise ValueError(f"a tree is name=path[:executor], not {text!r}")
        return cls(name, Path(path).resolve(), executor or None)


def hostile_bodies(limits: LimitSettings) -> dict[str, bytes]:
    """The costliest requests the limits let in, one of each kind: the largest schema the
    gateway checks, one far past that size (refused by its size), as many tools as allowed
    sharing the body, and as many messages as allowed sharing the prompt's characters."""
    room = int(limits.max_body_bytes * 0.9)
    return {"schema": schema_body(MODEL, limits.max_schema_bytes - 64),
            "schema_over": schema_body(MODEL, room - 1024),
            "tools": tools_body(MODEL, room, limits.max_tools),
            "messages": messages_body(MODEL, limits.max_messages, limits.max_prompt_chars - 100)}


@contextlib.contextmanager
def gateway(variant: Variant, logs: Path) -> Iterator[str]:
    """``llm-gateway serve --profile test`` from the variant's tree; yields its URL."""
    env = {} if variant.executor is None else {"LLMGW_PLANNING__EXECUTOR": variant.executor}
    with served_gateway(free_port(), logs / f"{variant.name}.log", env, cwd=variant.tree,
                        ready_timeout_s=READY_TIMEOUT_S) as url:
        yield url


def _hostile_key(url: str) -> str:
    response = httpx.post(url + "/admin/keys", json={"tenant": "hostile"}, timeout=60,
                          headers={"authorization": f"Bearer {ADMIN_KEY}"})
    response.raise_for_status()
    return str(response.json()["key"])


def _collect(sender: Any, out: Any) -> dict[str, int]:
    counts: dict[str, int] = out.get(timeout=900)
    sender.join(60)
    return counts


def run_variant(variant: Variant, args: argparse.Namespace, bodies: dict[str, bytes],
                logs: Path) -> dict[str, Any]:
    with gateway(variant, logs) as url:
        key = _hostile_key(url)
        warm = asyncio.run(_warm_up(url, key, list(bodies.values())))
        idle = asyncio.run(measure(url, ADMIN_KEY, MODEL, args.duration)).summary()
        spawn = multiprocessing.get_context("spawn")
        out = spawn.Queue()
        sender = spawn.Process(target=flood_process, args=(
            url, key, list(bodies.values()), args.concurrency, args.duration, out))
        sender.start()
        hostile = asyncio.run(measure(url, ADMIN_KEY, MODEL, args.duration)).summary()
        hostile["hostile_statuses"] = _collect(sender, out)
    return {"name": variant.name, "tree": str(variant.tree), "executor": variant.executor,
            "warm_up_statuses": warm, "idle": idle, "hostile": hostile,
            **verdict(idle, hostile)}


def _run_or_record(variant: Variant, args: argparse.Namespace, bodies: dict[str, bytes],
                   logs: Path) -> dict[str, Any]:
    """A variant that fails (a gateway that does not start) is recorded with its error and
    its log's tail; the other variants still run."""
    try:
        return run_variant(variant, args, bodies, logs)
    except Exception as exc:
        log = logs / f"{variant.name}.log"
        tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
        return {"name": variant.name, "tree": str(variant.tree), "error": repr(exc),
                "log_tail": tail}


async def _warm_up(url: str, key: str, bodies: list[bytes]) -> list[int]:
    """One stream and one hostile body of each kind (planning workers started, code warm)."""
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        statuses = [(await client.post("/v1/chat/completions", content=body, headers={
            "authorization": f"Bearer {key}", "content-type": "application/json"})).status_code
            for body in bodies]
        await client.post("/v1/chat/completions", headers={"authorization": f"Bearer {ADMIN_KEY}"},
                          json={"model": MODEL, "max_tokens": 16,
                                "messages": [{"role": "user", "content": "Hi"}]})
    return statuses


def _cell(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value:g}{unit}"


def render(doc: dict[str, Any]) -> str:
    machine = doc["machine"]
    rows = ["| variant | /health p50 / p99 idle (ms) | under flood (ms) | p99 ratio | "
            "inter-token gap p50 / p99 idle (ms) | under flood (ms) | p99 ratio | "
            "hostile answers | goal (<= 2x) |", "|---|---|---|---|---|---|---|---|---|"]
    for v in doc["variants"]:
        if "error" in v:
            rows.append(f"| {v['name']} | failed: {v['error']} |||||||| |")
            continue
        idle, hot = v["idle"], v["hostile"]
        answers = ", ".join(f"{k}: {n}" for k, n in sorted(hot["hostile_statuses"].items()))
        rows.append(
            f"| {v['name']} | {_cell(idle['health_p50_ms'])} / {_cell(idle['health_p99_ms'])} "
            f"| {_cell(hot['health_p50_ms'])} / {_cell(hot['health_p99_ms'])} "
            f"| {_cell(v['health_p99_ratio'], 'x')} "
            f"| {_cell(idle['gap_p50_ms'])} / {_cell(idle['gap_p99_ms'])} "
            f"| {_cell(hot['gap_p50_ms'])} / {_cell(hot['gap_p99_ms'])} "
            f"| {_cell(v['gap_p99_ratio'], 'x')} | {answers} "
            f"| {'met' if v['meets_goal'] else 'missed'} |")
    sizes = ", ".join(f"{k} {n / 1024:.0f} KiB" for k, n in doc["body_bytes"].items())
    notes = [f"**Note:** {doc['note']}", ""] if doc.get("note") else []
    return "\n".join([
        f"# A hostile client against the event loop, {doc['date']}", "",
        f"Machine: {machine['cpu']}, {machine['cores_usable']} usable cores, "
        f"{machine['memory_gib']} GiB; vLLM {machine['vllm']}; bench commit "
        f"{machine['git_commit']}. Load average at start "
        f"{', '.join(f'{x:.2f}' for x in machine['load_average_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in doc['load_average_end'])}.", "", *notes,
        f"Each variant: a real gateway (profile test, {MODEL}, chat only) from its own tree; "
        f"{doc['duration_s']:g} s idle, then {doc['duration_s']:g} s while another process "
        f"sends maximum-size bodies ({sizes}) back to back, {doc['concurrency']} at once, "
        "from one tenant's key without limits. Probes (another tenant): `GET /health` every "
        "50 ms, and greedy streams (128 tokens) back to back, whose gaps between content "
        "chunks are the inter-token gaps. Ratios: p99 under the flood / idle p99.", "",
        *rows, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tree", action="append", default=[],
                        help="name=path[:executor], in the order to run (default: this "
                             "checkout with the process and the thread executor)")
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=6)
    parser.add_argument("--note", default="")
    parser.add_argument("--kind", default="hostile", help="the result file's kind")
    args = parser.parse_args()
    variants = [Variant.parse(t) for t in args.tree] or [
        Variant("process", REPO, "process"), Variant("thread", REPO, "thread")]
    bodies = hostile_bodies(load_settings(profile="test").limits)
    machine = describe()
    logs = Path(tempfile.mkdtemp(prefix="llmgw-hostile-logs-"))  # kept: read them on failure
    results = [_run_or_record(v, args, bodies, logs) for v in variants]
    doc = {"date": date.today().isoformat(), "machine": machine, "note": args.note,
           "duration_s": args.duration, "concurrency": args.concurrency,
           "body_bytes": {k: len(b) for k, b in bodies.items()}, "variants": results,
           "load_average_end": list(os.getloadavg())}
    print(save_run(doc, args.kind, render).read_text())


if __name__ == "__main__":
    main()
