"""The Grafana dashboard shipped with the chart queries metrics the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from engine.fake import FakeEngine
from tests.conftest import MODEL, REPO
from tests.gateway.conftest import sqlite_url
from tests.gateway.metered import ADMIN, bearer, create_key, metered_client, metered_settings

DASHBOARD = REPO / "helm" / "llm-gateway" / "dashboards" / "llm-gateway.json"
TITLES = {"Requests per second", "End-to-end latency", "Time to first token", "Tokens per second",
          "Errors and 429s per second", "Cost per hour by model", "Cost per hour by tenant",
          "Speculation acceptance"}


def _sample_names(family: str, kind: str) -> set[str]:
    """The series names a family exports, whether or not it has samples yet."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    return {family + suffix for suffix in suffixes.get(kind, ("",))}


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def test_grafana_dashboard_when_loaded_then_has_the_dashboard_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "llm-gateway"
    assert {p["title"] for p in dashboard["panels"]} >= TITLES
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


async def test_grafana_dashboard_when_metered_gateway_scraped_then_every_queried_metric_exists(
    tmp_path: Path,
) -> None:
    settings = metered_settings(sqlite_url(tmp_path))
    async with metered_client(FakeEngine(model_name=MODEL), settings) as (client, _):
        key = await create_key(client, "acme")
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        response = await client.post("/v1/chat/completions", json=chat, headers=bearer(key))
        assert response.status_code == 200, response.text
        exposition = (await client.get("/metrics", headers=ADMIN)).text
    exported = {name for family in text_string_to_metric_families(exposition)
                 for name in _sample_names(family.name, family.type)}
    queried = {name for expr in _exprs(json.loads(DASHBOARD.read_text()))
               for name in re.findall(r"\bllmgw_[a-z_]+", expr)}
    assert queried
    assert queried <= exported, queried - exported


def test_engine_gauges_are_not_multiplied_by_the_number_of_gateway_pods() -> None:
    """Every gateway pod reports the same engine-wide gauges (its replicas' merged stats):
    summing them over pods multiplies the queue by the gateway count, so panels take max."""
    dashboard = json.loads(DASHBOARD.read_text())
    engine_gauges = [expr for expr in _exprs(dashboard)
                     if re.search(r"\bllmgw_engine_[a-z_]+\b(?!_bucket|_total)", expr)]
    assert engine_gauges
    for expr in engine_gauges:
        assert not re.search(r"\bsum\b", expr), expr
