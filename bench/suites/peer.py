"""Section 5: an optional peer server (any OpenAI-compatible URL), same prompts, same run."""

from __future__ import annotations

from typing import Any

from bench.plan import BenchContext, Probe, Results, Section, Suite, level_row
from bench.targets import TargetSpec

COLUMNS = (
    ("concurrency", "streams"), ("gateway_tok_s", "gateway tok/s"),
    ("peer_tok_s", "peer tok/s"), ("ratio", "gateway/peer"),
    ("gateway_ttft_ms", "gateway TTFT p50 ms"), ("peer_ttft_ms", "peer TTFT p50 ms"),
    ("peer_tokens_from", "peer tokens counted from"), ("status", "status"),
)


def _peer(ctx: BenchContext) -> TargetSpec | None:
    if ctx.peer is None:
        return None
    return TargetSpec("peer", ctx.peer.model, label="peer")


def probes(ctx: BenchContext) -> list[Probe]:
    peer = _peer(ctx)
    if peer is None:
        return []
    levels = ctx.sizes.peer_levels
    return ([ctx.probe(peer, "chat", c) for c in levels]
            + [ctx.probe(ctx.gateway(), "chat", c) for c in levels])


def _row(ctx: BenchContext, results: Results, peer: TargetSpec, c: int) -> dict[str, Any]:
    gw = level_row(ctx, ctx.model, results.get(ctx.probe(ctx.gateway(), "chat", c)))
    result = results.get(ctx.probe(peer, "chat", c))
    other = level_row(ctx, peer.model, result)
    ratio = None
    if gw.get("tok_s") and other.get("tok_s"):
        ratio = round(gw["tok_s"] / other["tok_s"], 2)
    source = result.stats.token_source if result and result.stats else None
    status = "ok" if gw["status"] == other["status"] == "ok" else (
        f"gateway: {gw['status']}; peer: {other['status']}")
    return {"concurrency": c, "gateway_tok_s": gw.get("tok_s"), "peer_tok_s": other.get("tok_s"),
            "ratio": ratio, "gateway_ttft_ms": gw.get("ttft_p50_ms"),
            "peer_ttft_ms": other.get("ttft_p50_ms"), "peer_tokens_from": source,
            "status": status, "peer": other}


def summarise(ctx: BenchContext, results: Results) -> Section:
    peer = _peer(ctx)
    if peer is None or ctx.peer is None:
        return Section("peer", TITLE, COLUMNS, (), ("No --peer URL given: not measured.",))
    rows = tuple(_row(ctx, results, peer, c) for c in ctx.sizes.peer_levels)
    what = "" if ctx.peer.label == "peer" else f"{ctx.peer.label}, "
    notes = (f"peer: {what}{ctx.peer.v1_url} serving {ctx.peer.model!r}, measured in this run "
             "with the same prompts and greedy sampling while no engine of ours was running.",
             "A peer that sends no usage chunk has its content chunks counted instead.")
    return Section("peer", TITLE, COLUMNS, rows, notes, {"url": ctx.peer.v1_url})


TITLE = "Peer server"
SUITE = Suite("peer", TITLE, probes, summarise)
