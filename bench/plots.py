"""PNG plots drawn from a result document (so they can be redrawn from committed JSON)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

Doc = Mapping[str, Any]


def _rows(doc: Doc, section: str) -> list[dict[str, Any]]:
    found = doc.get("sections", {}).get(section)
    return list(found["rows"]) if found else []


def _series(doc: Doc) -> dict[str, dict[int, dict[str, Any]]]:
    """streams -> numbers for the gateway, engine direct and the peer."""
    out: dict[str, dict[int, dict[str, Any]]] = {"gateway": {}, "engine direct": {}, "peer": {}}
    for row in _rows(doc, "batching"):
        if row.get("tok_s") is not None:
            out["gateway"][row["concurrency"]] = row
    for row in _rows(doc, "overhead"):
        for key, name in (("gateway", "gateway"), ("engine", "engine direct")):
            if row.get(key, {}).get("tok_s") is not None:
                out[name].setdefault(row["concurrency"], row[key])
    for row in _rows(doc, "peer"):
        if row.get("peer", {}).get("tok_s") is not None:
            out["peer"][row["concurrency"]] = row["peer"]
    return {name: points for name, points in out.items() if points}


def _line_plot(doc: Doc, key: str, ylabel: str, title: str, path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    series = _series(doc)
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, points in series.items():
        xs = sorted(c for c in points if points[c].get(key) is not None)
        ax.plot(xs, [points[c][key] for c in xs], marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _bars(ax: Any, labels: list[str], values: list[float], title: str) -> None:
    ax.bar(range(len(values)), values, color="tab:blue")
    ax.set_xticks(range(len(values)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("tok/s")
    ax.grid(True, axis="y", alpha=0.3)


def _variants_plot(doc: Doc, path: Path) -> Path | None:
    import matplotlib.pyplot as plt

    spec = [r for r in _rows(doc, "speculation") if r.get("tok_s") is not None]
    prec = [r for r in _rows(doc, "precision") if r.get("tok_s") is not None]
    if not spec and not prec:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110)
    _bars(axes[0], [f"{r['variant']} {r['workload']} x{r['concurrency']}" for r in spec],
          [r["tok_s"] for r in spec], "Speculation (aggregate tok/s)")
    _bars(axes[1], [f"{r['precision']} x{r['concurrency']}" for r in prec],
          [r["tok_s"] for r in prec], "Precision (aggregate tok/s)")
    for r in prec:
        if r["concurrency"] == 1 and r.get("ceiling_tok_s"):
            axes[1].axhline(r["ceiling_tok_s"], linestyle="--", linewidth=0.8, color="grey")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def render(doc: Doc, folder: Path, stem: str) -> list[Path]:
    """Draw every plot the document has data for; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    drawn = [
        _line_plot(doc, "tok_s", "aggregate completion tok/s", "Throughput",
                   folder / f"{stem}-throughput.png"),
        _line_plot(doc, "ttft_p50_ms", "time to first token, p50 (ms)", "Time to first token",
                   folder / f"{stem}-ttft.png"),
        _variants_plot(doc, folder / f"{stem}-variants.png"),
    ]
    return [path for path in drawn if path is not None]
